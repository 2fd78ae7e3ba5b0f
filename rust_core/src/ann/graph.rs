//! The HNSW graph's storage: fixed-capacity neighbour lists in two contiguous arrays (layer 0 and
//! upper layers), per-node locks for writers, and the per-search scratch (visited set, candidates).
//!
//! Lists are `AtomicU32` so searches can read a list while a builder thread rewrites it (parallel
//! build): a writer stores the entries, then the count with `Release`; a reader loads the count with
//! `Acquire`. A reader racing a rewrite may see a mix of old and new entries, which are all valid
//! nodes, so the only effect is the usual approximation of a concurrently built graph (as in hnswlib).

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// Neighbour lists of every node on every layer it belongs to.
#[derive(Debug)]
pub struct Links {
    m: usize,
    m0: usize,
    /// `n × (m0 + 1)`: count, then up to `m0` neighbours.
    base: Vec<AtomicU32>,
    /// For each node with level ≥ 1, `level × (m + 1)` slots starting at `upper_at[node]`.
    upper: Vec<AtomicU32>,
    upper_at: Vec<usize>,
    levels: Vec<u8>,
    locks: Vec<Mutex<()>>,
}

impl Links {
    /// Empty storage for lists of `m` neighbours (`2m` on layer 0).
    pub fn new(m: usize) -> Self {
        Self {
            m,
            m0: 2 * m,
            base: Vec::new(),
            upper: Vec::new(),
            upper_at: Vec::new(),
            levels: Vec::new(),
            locks: Vec::new(),
        }
    }

    /// Most neighbours a node keeps on `layer`.
    pub fn cap(&self, layer: usize) -> usize {
        if layer == 0 {
            self.m0
        } else {
            self.m
        }
    }

    /// Top layer of `node`.
    pub fn level(&self, node: u32) -> usize {
        usize::from(self.levels[node as usize])
    }

    /// Adds a node with empty lists on layers `0..=level` (not concurrent: needs `&mut`).
    pub fn push(&mut self, level: u8) {
        self.base.extend((0..=self.m0).map(|_| AtomicU32::new(0)));
        self.upper_at.push(self.upper.len());
        self.upper
            .extend((0..usize::from(level) * (self.m + 1)).map(|_| AtomicU32::new(0)));
        self.levels.push(level);
        self.locks.push(Mutex::new(()));
    }

    /// Reserves room for `n` more nodes on layer 0.
    pub fn reserve(&mut self, n: usize) {
        crate::vector::storage::reserve(&mut self.base, n * (self.m0 + 1));
        self.upper_at.reserve(n);
        self.levels.reserve(n);
        self.locks.reserve(n);
    }

    fn slot(&self, node: u32, layer: usize) -> &[AtomicU32] {
        if layer == 0 {
            let at = node as usize * (self.m0 + 1);
            &self.base[at..at + self.m0 + 1]
        } else {
            let at = self.upper_at[node as usize] + (layer - 1) * (self.m + 1);
            &self.upper[at..at + self.m + 1]
        }
    }

    /// Copies the neighbours of `node` on `layer` into `out` (cleared first).
    #[inline]
    pub fn read(&self, node: u32, layer: usize, out: &mut Vec<u32>) {
        let slot = self.slot(node, layer);
        let n = (slot[0].load(Ordering::Acquire) as usize).min(slot.len() - 1);
        out.clear();
        out.extend(slot[1..=n].iter().map(|a| a.load(Ordering::Relaxed)));
    }

    /// Replaces the neighbours of `node` on `layer` (at most `cap(layer)`; the caller holds
    /// `lock(node)` so writers never interleave).
    pub fn write(&self, node: u32, layer: usize, ids: &[u32]) {
        let slot = self.slot(node, layer);
        let n = ids.len().min(slot.len() - 1);
        for (a, &id) in slot[1..=n].iter().zip(ids) {
            a.store(id, Ordering::Relaxed);
        }
        // n <= 2m, which the constructor bounds far below u32::MAX.
        slot[0].store(n as u32, Ordering::Release);
    }

    /// The writer lock of `node`. A poisoned lock is still usable: the lists hold no invariant
    /// a panicking writer could break beyond what a racing reader already tolerates.
    pub fn lock(&self, node: u32) -> MutexGuard<'_, ()> {
        self.locks[node as usize]
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Top layer of every node.
    pub fn levels(&self) -> &[u8] {
        &self.levels
    }

    /// The raw lists (count, then neighbours): layer 0 of every node, then the upper layers.
    pub fn export(&self) -> (Vec<u32>, Vec<u32>) {
        let load = |a: &AtomicU32| a.load(Ordering::Acquire);
        (
            self.base.iter().map(load).collect(),
            self.upper.iter().map(load).collect(),
        )
    }

    /// Lists from [`Links::export`] for nodes of `levels`. Checks the array lengths, that no count
    /// exceeds its layer's capacity, and that every neighbour on a layer is a node (below
    /// `levels.len()`) that reaches that layer, so a walk never reads outside the lists.
    pub fn import(
        m: usize,
        levels: Vec<u8>,
        base: Vec<u32>,
        upper: Vec<u32>,
    ) -> Result<Self, String> {
        let mut links = Self::new(m);
        let n = levels.len();
        if base.len() != n * (links.m0 + 1) {
            return Err(format!("layer 0 has {} slots for {n} nodes", base.len()));
        }
        let mut upper_at = Vec::with_capacity(n);
        let mut at = 0usize;
        for &level in &levels {
            upper_at.push(at);
            at += usize::from(level) * (m + 1);
        }
        if upper.len() != at {
            return Err(format!(
                "upper layers have {} slots, the levels need {at}",
                upper.len()
            ));
        }
        let check = |node: usize, layer: usize, list: &[u32], cap: usize| -> Result<(), String> {
            let count = list[0] as usize;
            if count > cap {
                return Err(format!(
                    "node {node} has {count} neighbours on layer {layer} (at most {cap})"
                ));
            }
            for &nb in &list[1..=count] {
                if levels
                    .get(nb as usize)
                    .is_none_or(|&l| usize::from(l) < layer)
                {
                    return Err(format!(
                        "node {node} links to {nb} on layer {layer}, which is not there"
                    ));
                }
            }
            Ok(())
        };
        for (node, list) in base.chunks_exact(links.m0 + 1).enumerate() {
            check(node, 0, list, links.m0)?;
        }
        for (node, &level) in levels.iter().enumerate() {
            for layer in 1..=usize::from(level) {
                let from = upper_at[node] + (layer - 1) * (m + 1);
                check(node, layer, &upper[from..from + m + 1], m)?;
            }
        }
        links.base = base.into_iter().map(AtomicU32::new).collect();
        links.upper = upper.into_iter().map(AtomicU32::new).collect();
        links.upper_at = upper_at;
        links.locks = (0..n).map(|_| Mutex::new(())).collect();
        links.levels = levels;
        Ok(links)
    }

    /// Bytes held by the lists, offsets, levels and locks.
    pub fn nbytes(&self) -> usize {
        (self.base.len() + self.upper.len()) * 4
            + self.upper_at.len() * 8
            + self.levels.len()
            + self.locks.len() * std::mem::size_of::<Mutex<()>>()
    }
}

/// Which nodes a search has already scored, reset in O(1) by bumping an epoch.
#[derive(Debug, Default)]
pub struct Visited {
    tags: Vec<u32>,
    epoch: u32,
}

impl Visited {
    /// Starts a new search over `n` nodes.
    pub fn reset(&mut self, n: usize) {
        if self.tags.len() < n {
            self.tags.resize(n, 0);
        }
        self.epoch = self.epoch.wrapping_add(1);
        if self.epoch == 0 {
            self.tags.fill(0);
            self.epoch = 1;
        }
    }

    /// Marks `node`; true when it was not marked yet in this search.
    #[inline]
    pub fn insert(&mut self, node: u32) -> bool {
        let t = &mut self.tags[node as usize];
        let fresh = *t != self.epoch;
        *t = self.epoch;
        fresh
    }
}

/// Visited sets kept between searches, so a query does not allocate and zero `4n` bytes.
#[derive(Debug, Default)]
pub struct VisitedPool(Mutex<Vec<Visited>>);

impl VisitedPool {
    /// A set ready for a search over `n` nodes.
    pub fn take(&self, n: usize) -> Visited {
        let mut v = self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default();
        v.reset(n);
        v
    }

    /// Returns a set for reuse.
    pub fn give(&self, v: Visited) {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(v);
    }
}

/// One candidate of a layer search.
#[derive(Debug, Clone, Copy)]
pub struct Cand {
    /// Similarity to the probe (higher is closer).
    pub score: f32,
    /// Node.
    pub node: u32,
    expanded: bool,
}

/// The best `cap` candidates seen so far, sorted best first, with a cursor at the best one not yet
/// expanded: the candidate queue and the result set of HNSW's layer search in one small array.
#[derive(Debug)]
pub struct Candidates {
    items: Vec<Cand>,
    cap: usize,
    cursor: usize,
}

impl Candidates {
    /// Empty, keeping at most `cap` (>= 1).
    pub fn new(cap: usize) -> Self {
        Self {
            items: Vec::with_capacity(cap + 1),
            cap: cap.max(1),
            cursor: 0,
        }
    }

    /// Offers a candidate; ignored when the list is full and it is not better than the worst.
    #[inline]
    pub fn push(&mut self, score: f32, node: u32) {
        if self.items.len() == self.cap && self.items.last().is_some_and(|w| score <= w.score) {
            return;
        }
        let at = self.items.partition_point(|c| c.score >= score);
        self.items.insert(
            at,
            Cand {
                score,
                node,
                expanded: false,
            },
        );
        self.items.truncate(self.cap);
        self.cursor = self.cursor.min(at);
    }

    /// The best candidate not expanded yet, now marked expanded.
    #[inline]
    pub fn next(&mut self) -> Option<u32> {
        while self.cursor < self.items.len() && self.items[self.cursor].expanded {
            self.cursor += 1;
        }
        let c = self.items.get_mut(self.cursor)?;
        c.expanded = true;
        Some(c.node)
    }

    /// Kept candidates, best first.
    pub fn items(&self) -> &[Cand] {
        &self.items
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_keep_the_best_sorted_and_expand_in_order() {
        let mut c = Candidates::new(3);
        for (s, n) in [(0.5, 1), (0.9, 2), (0.1, 3), (0.7, 4), (0.05, 5)] {
            c.push(s, n);
        }
        let nodes: Vec<u32> = c.items().iter().map(|x| x.node).collect();
        assert_eq!(nodes, vec![2, 4, 1]);
        assert_eq!(c.next(), Some(2));
        c.push(0.95, 6);
        assert_eq!(c.next(), Some(6));
        assert_eq!(c.next(), Some(4));
        // 0.5 fell off the end when 0.95 came in.
        assert_eq!(c.next(), None);
    }

    #[test]
    fn links_round_trip_and_cap() {
        let mut l = Links::new(2);
        l.push(0);
        l.push(2);
        let mut out = Vec::new();
        l.write(1, 0, &[0, 0, 0, 0, 0]);
        l.read(1, 0, &mut out);
        assert_eq!(out.len(), 4);
        l.write(1, 2, &[0]);
        l.read(1, 2, &mut out);
        assert_eq!(out, vec![0]);
        l.read(1, 1, &mut out);
        assert!(out.is_empty());
        assert_eq!(l.level(1), 2);
    }

    #[test]
    fn visited_resets_by_epoch() {
        let mut v = Visited::default();
        v.reset(4);
        assert!(v.insert(3));
        assert!(!v.insert(3));
        v.reset(4);
        assert!(v.insert(3));
    }
}
