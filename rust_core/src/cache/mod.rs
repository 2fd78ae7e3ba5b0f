//! A strict LRU cache with per-entry TTL. Hand-written rather than `moka`: callers (and tests) rely on
//! exact LRU order, exact `len`, exact eviction counts and never seeing an expired entry, while moka
//! admits by TinyLFU and applies evictions lazily. Not internally synchronised: wrap it in a `Mutex`.

use std::collections::HashMap;
use std::time::{Duration, Instant};

const NIL: usize = usize::MAX;

#[derive(Debug)]
struct Node<V> {
    key: String,
    value: V,
    expires: Option<Instant>,
    prev: usize,
    next: usize,
}

/// Hit / miss / eviction / insert / expiration counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// `get` calls that found a live entry.
    pub hits: u64,
    /// `get` calls that found nothing (or an expired entry).
    pub misses: u64,
    /// Entries pushed out to make room.
    pub evictions: u64,
    /// `set` calls.
    pub inserts: u64,
    /// Entries dropped because their TTL passed.
    pub expirations: u64,
}

/// String-keyed LRU with TTL; entries live in a slab linked most-recent-first.
#[derive(Debug)]
pub struct TtlCache<V> {
    capacity: usize,
    default_ttl: Option<Duration>,
    map: HashMap<String, usize>,
    nodes: Vec<Node<V>>,
    free: Vec<usize>,
    head: usize,
    tail: usize,
    stats: CacheStats,
}

impl<V> TtlCache<V> {
    /// A cache of at most `capacity` (>= 1) entries, expiring after `default_ttl` unless `set` says otherwise.
    pub fn new(capacity: usize, default_ttl: Option<Duration>) -> Self {
        Self {
            capacity: capacity.max(1),
            default_ttl,
            map: HashMap::with_capacity(capacity.min(1 << 16)),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            stats: CacheStats::default(),
        }
    }

    /// Maximum number of entries.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Counters so far.
    pub fn stats(&self) -> CacheStats {
        self.stats
    }

    fn unlink(&mut self, i: usize) {
        let (p, n) = (self.nodes[i].prev, self.nodes[i].next);
        if p == NIL {
            self.head = n
        } else {
            self.nodes[p].next = n
        }
        if n == NIL {
            self.tail = p
        } else {
            self.nodes[n].prev = p
        }
    }

    fn push_front(&mut self, i: usize) {
        self.nodes[i].prev = NIL;
        self.nodes[i].next = self.head;
        if self.head != NIL {
            self.nodes[self.head].prev = i;
        }
        self.head = i;
        if self.tail == NIL {
            self.tail = i;
        }
    }

    fn drop_slot(&mut self, i: usize) {
        self.unlink(i);
        let key = std::mem::take(&mut self.nodes[i].key);
        self.map.remove(&key);
        self.free.push(i);
    }

    fn expired(&self, i: usize, now: Instant) -> bool {
        self.nodes[i].expires.is_some_and(|t| now >= t)
    }

    /// Value of `key` at time `now` (expired entries are dropped and count as misses).
    pub fn get_at(&mut self, key: &str, now: Instant) -> Option<&V> {
        let Some(&i) = self.map.get(key) else {
            self.stats.misses += 1;
            return None;
        };
        if self.expired(i, now) {
            self.drop_slot(i);
            self.stats.expirations += 1;
            self.stats.misses += 1;
            return None;
        }
        self.stats.hits += 1;
        self.unlink(i);
        self.push_front(i);
        Some(&self.nodes[i].value)
    }

    /// [`TtlCache::get_at`] now.
    pub fn get(&mut self, key: &str) -> Option<&V> {
        self.get_at(key, Instant::now())
    }

    /// Whether `key` is present and live, without touching recency or counters.
    pub fn contains_at(&self, key: &str, now: Instant) -> bool {
        self.map.get(key).is_some_and(|&i| !self.expired(i, now))
    }

    /// Inserts or replaces `key` at time `now`; `ttl` overrides the default lifetime.
    pub fn set_at(&mut self, key: &str, value: V, ttl: Option<Duration>, now: Instant) {
        self.stats.inserts += 1;
        let expires = ttl.or(self.default_ttl).map(|d| now + d);
        if let Some(&i) = self.map.get(key) {
            self.nodes[i].value = value;
            self.nodes[i].expires = expires;
            self.unlink(i);
            self.push_front(i);
            return;
        }
        // Evict the least recently used entry in O(1); expired entries elsewhere are dropped lazily
        // (on access, `len` or `keys`), never returned. An expired tail counts as an expiration.
        if self.map.len() >= self.capacity && self.tail != NIL {
            let t = self.tail;
            if self.expired(t, now) {
                self.stats.expirations += 1;
            } else {
                self.stats.evictions += 1;
            }
            self.drop_slot(t);
        }
        let node = Node {
            key: key.to_owned(),
            value,
            expires,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i] = node;
                i
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.map.insert(key.to_owned(), i);
        self.push_front(i);
    }

    /// [`TtlCache::set_at`] now.
    pub fn set(&mut self, key: &str, value: V, ttl: Option<Duration>) {
        self.set_at(key, value, ttl, Instant::now());
    }

    /// Removes `key`; true if a live entry was removed.
    pub fn delete(&mut self, key: &str) -> bool {
        let now = Instant::now();
        match self.map.get(key).copied() {
            Some(i) => {
                let live = !self.expired(i, now);
                self.drop_slot(i);
                live
            }
            None => false,
        }
    }

    /// Drops every entry (counters stay).
    pub fn clear(&mut self) {
        self.map.clear();
        self.nodes.clear();
        self.free.clear();
        self.head = NIL;
        self.tail = NIL;
    }

    /// Drops entries whose TTL has passed at `now`.
    pub fn purge_expired(&mut self, now: Instant) {
        let dead: Vec<usize> = self
            .map
            .values()
            .copied()
            .filter(|&i| self.expired(i, now))
            .collect();
        self.stats.expirations += dead.len() as u64;
        for i in dead {
            self.drop_slot(i);
        }
    }

    /// Live entries at `now` (expired ones are purged first).
    pub fn len_at(&mut self, now: Instant) -> usize {
        self.purge_expired(now);
        self.map.len()
    }

    /// Live keys at `now`, most recently used first.
    pub fn keys_at(&mut self, now: Instant) -> Vec<String> {
        self.purge_expired(now);
        let mut out = Vec::with_capacity(self.map.len());
        let mut i = self.head;
        while i != NIL {
            out.push(self.nodes[i].key.clone());
            i = self.nodes[i].next;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn evicts_least_recently_used() {
        let mut c = TtlCache::new(2, None);
        c.set("a", 1, None);
        c.set("b", 2, None);
        assert_eq!(c.get("a"), Some(&1));
        c.set("c", 3, None);
        assert_eq!(c.get("b"), None);
        assert_eq!(c.keys_at(Instant::now()), ["c", "a"]);
        let s = c.stats();
        assert_eq!((s.hits, s.misses, s.evictions, s.inserts), (1, 1, 1, 3));
    }

    #[test]
    fn expired_entries_are_never_returned() {
        let mut c = TtlCache::new(10, Some(Duration::from_secs(5)));
        let t0 = Instant::now();
        c.set_at("a", 1, None, t0);
        c.set_at("b", 2, Some(Duration::from_secs(60)), t0);
        assert_eq!(c.get_at("a", t0 + Duration::from_secs(4)), Some(&1));
        assert_eq!(c.get_at("a", t0 + Duration::from_secs(5)), None);
        assert_eq!(c.len_at(t0 + Duration::from_secs(6)), 1);
        assert!(c.contains_at("b", t0 + Duration::from_secs(59)));
        assert_eq!(c.stats().expirations, 1);
    }

    #[test]
    fn replace_keeps_one_entry_and_delete_frees_it() {
        let mut c = TtlCache::new(2, None);
        c.set("a", 1, None);
        c.set("a", 2, None);
        assert_eq!(c.len_at(Instant::now()), 1);
        assert!(c.delete("a"));
        assert!(!c.delete("a"));
        c.set("b", 3, None);
        c.set("c", 4, None);
        assert_eq!(c.stats().evictions, 0);
        c.clear();
        assert_eq!(c.len_at(Instant::now()), 0);
    }
}
