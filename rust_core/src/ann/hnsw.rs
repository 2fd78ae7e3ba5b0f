//! [`HnswIndex`]: a hierarchical navigable small-world graph over int8 codes, with the final
//! candidates re-ranked on the f32 rows.
//!
//! The graph is built and walked with int8 similarities (a quarter of the memory traffic of f32 and
//! a `maddubs` kernel); the `ef` best candidates of the bottom layer are then scored exactly, so the
//! quantisation error costs almost no recall. Inserts run in parallel (rayon) with per-node locks.

use std::sync::{Mutex, PoisonError};

use rayon::prelude::*;
use rustc_hash::FxHashMap as HashMap;

use super::dist::{dot_i8, dot_i8_x4, prefetch};
use super::graph::{Candidates, Links, Visited, VisitedPool};
use crate::errors::{CoreError, CoreResult};
use crate::vector::quant::quantize_into;
use crate::vector::{check_finite, normalized, simd, storage, Metric};

mod persist;

/// Build parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HnswParams {
    /// Neighbours per node on upper layers (`2m` on layer 0).
    pub m: usize,
    /// Candidate list size while inserting.
    pub ef_construction: usize,
    /// Seed of the level draw (levels are a pure function of seed and insertion position).
    pub seed: u64,
    /// Keep the f32 rows for an exact re-rank inside [`HnswIndex::search`]. Without them the index
    /// holds int8 codes and the graph only (a quarter of the memory) and answers
    /// [`HnswIndex::candidates`], which a caller that stores the rows anyway re-ranks itself.
    pub keep_rows: bool,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self {
            m: 16,
            ef_construction: 200,
            seed: 0,
            keep_rows: true,
        }
    }
}

/// Largest `m` accepted (lists are fixed-size arrays of `2m + 1` slots per node).
pub const MAX_M: usize = 256;

/// A probe: int8 codes and their scale (a query or a stored node).
#[derive(Clone, Copy)]
struct Probe<'a> {
    codes: &'a [i8],
    scale: f32,
}

/// Approximate nearest-neighbour index keyed by u64 ids. Removed (or replaced) rows become
/// tombstones: still used to route searches, never returned.
#[derive(Debug)]
pub struct HnswIndex {
    dim: usize,
    metric: Metric,
    params: HnswParams,
    ids: Vec<u64>,
    slots: HashMap<u64, u32>,
    deleted: Vec<bool>,
    live: usize,
    data: Vec<f32>,
    codes: Vec<i8>,
    scales: Vec<f32>,
    links: Links,
    /// Entry node and its level; `None` while empty.
    entry: Mutex<Option<(u32, usize)>>,
    visited: VisitedPool,
}

impl HnswIndex {
    /// An empty index of `dim`-dimensional rows.
    pub fn new(dim: usize, metric: Metric, params: HnswParams) -> CoreResult<Self> {
        if dim == 0 {
            return Err(CoreError::invalid("dim must be >= 1"));
        }
        if !(2..=MAX_M).contains(&params.m) {
            return Err(CoreError::invalid(format!(
                "m must be between 2 and {MAX_M}, got {}",
                params.m
            )));
        }
        if params.ef_construction == 0 {
            return Err(CoreError::invalid("ef_construction must be >= 1"));
        }
        Ok(Self {
            dim,
            metric,
            params,
            ids: Vec::new(),
            slots: HashMap::default(),
            deleted: Vec::new(),
            live: 0,
            data: Vec::new(),
            codes: Vec::new(),
            scales: Vec::new(),
            links: Links::new(params.m),
            entry: Mutex::new(None),
            visited: VisitedPool::default(),
        })
    }

    /// Row width.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Similarity measure.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Build parameters.
    pub fn params(&self) -> HnswParams {
        self.params
    }

    /// Live (not removed) rows.
    pub fn len(&self) -> usize {
        self.live
    }

    /// True when no live row is stored.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Graph nodes, tombstones included.
    pub fn nodes(&self) -> usize {
        self.ids.len()
    }

    /// Whether `id` is stored and live.
    pub fn contains(&self, id: u64) -> bool {
        self.slots.contains_key(&id)
    }

    /// Bytes held by rows, codes, ids and the graph (hash-map overhead not counted).
    pub fn nbytes(&self) -> usize {
        self.data.len() * 4
            + self.codes.len()
            + self.scales.len() * 4
            + self.ids.len() * 8
            + self.deleted.len()
            + self.links.nbytes()
    }

    fn code(&self, node: u32) -> &[i8] {
        let at = node as usize * self.dim;
        &self.codes[at..at + self.dim]
    }

    fn row(&self, node: u32) -> &[f32] {
        let at = node as usize * self.dim;
        &self.data[at..at + self.dim]
    }

    fn probe(&self, node: u32) -> Probe<'_> {
        Probe {
            codes: self.code(node),
            scale: self.scales[node as usize],
        }
    }

    #[inline]
    fn sim(&self, p: Probe<'_>, node: u32) -> f32 {
        dot_i8(p.codes, self.code(node)) as f32 * p.scale * self.scales[node as usize]
    }

    /// Scores `nodes` against `p` four at a time into `out`.
    fn sim_many(&self, p: Probe<'_>, nodes: &[u32], out: &mut Vec<f32>) {
        out.clear();
        let mut quads = nodes.chunks_exact(4);
        for q in &mut quads {
            let d = dot_i8_x4(
                p.codes,
                [
                    self.code(q[0]),
                    self.code(q[1]),
                    self.code(q[2]),
                    self.code(q[3]),
                ],
            );
            for (&x, &node) in d.iter().zip(q) {
                out.push(x as f32 * p.scale * self.scales[node as usize]);
            }
        }
        for &node in quads.remainder() {
            out.push(self.sim(p, node));
        }
    }

    /// Upserts `ids` with the rows of `vectors` (`ids.len() × dim`), inserting in parallel. Input is
    /// validated before anything changes. A repeated id keeps its last row; a replaced row becomes a
    /// tombstone.
    pub fn add(&mut self, ids: &[u64], vectors: &[f32]) -> CoreResult<()> {
        if vectors.len() != ids.len() * self.dim {
            return Err(CoreError::invalid(format!(
                "got {} ids but {} values; expected ids.len() x dim = {} x {}",
                ids.len(),
                vectors.len(),
                ids.len(),
                self.dim
            )));
        }
        check_finite("vectors", vectors)?;
        let mut rows = vectors.to_vec();
        if self.metric == Metric::Cosine {
            for (row, id) in rows.chunks_exact_mut(self.dim).zip(ids) {
                let unit = normalized(&format!("vector for id {id}"), row)?;
                row.copy_from_slice(&unit);
            }
        }
        // Last occurrence of each id wins.
        let mut last: HashMap<u64, usize> = HashMap::default();
        for (i, &id) in ids.iter().enumerate() {
            last.insert(id, i);
        }
        let fresh: Vec<usize> = (0..ids.len()).filter(|&i| last[&ids[i]] == i).collect();
        if self.ids.len() + fresh.len() > u32::MAX as usize {
            return Err(CoreError::invalid(
                "an HnswIndex holds at most 2^32 - 1 rows",
            ));
        }
        let start = self.ids.len();
        if self.params.keep_rows {
            storage::reserve(&mut self.data, fresh.len() * self.dim);
        }
        storage::reserve(&mut self.codes, fresh.len() * self.dim);
        self.links.reserve(fresh.len());
        for &i in &fresh {
            let node = self.ids.len() as u32;
            if let Some(old) = self.slots.insert(ids[i], node) {
                self.deleted[old as usize] = true;
                self.live -= 1;
            }
            let row = &rows[i * self.dim..(i + 1) * self.dim];
            if self.params.keep_rows {
                self.data.extend_from_slice(row);
            }
            let at = self.codes.len();
            self.codes.resize(at + self.dim, 0);
            self.scales.push(quantize_into(row, &mut self.codes[at..]));
            self.links.push(self.draw_level(node));
            self.ids.push(ids[i]);
            self.deleted.push(false);
            self.live += 1;
        }
        let end = self.ids.len() as u32;
        let this = &*self;
        let mut first = start as u32;
        if first < end && this.entry_point().is_none() {
            this.insert(first);
            first += 1;
        }
        (first..end)
            .into_par_iter()
            .for_each(|node| this.insert(node));
        Ok(())
    }

    /// Tombstones `ids` (unknown ids are ignored); returns how many were live.
    pub fn remove(&mut self, ids: &[u64]) -> usize {
        let mut removed = 0;
        for id in ids {
            if let Some(node) = self.slots.remove(id) {
                self.deleted[node as usize] = true;
                self.live -= 1;
                removed += 1;
            }
        }
        removed
    }

    /// Level of a new node: geometric with ratio 1/m, as in the HNSW paper, drawn from a hash of
    /// (seed, position) so a build is reproducible whatever the thread schedule.
    fn draw_level(&self, node: u32) -> u8 {
        let mut z = self.params.seed ^ (u64::from(node).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let u = ((z >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
        let level = -u.ln() / (self.params.m as f64).ln();
        level.min(32.0) as u8
    }

    fn entry_point(&self) -> Option<(u32, usize)> {
        *self.entry.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Greedy walk on `layer` from `(score, node)` towards `p` (the ef = 1 search of upper layers).
    fn greedy(
        &self,
        p: Probe<'_>,
        mut best: (f32, u32),
        layer: usize,
        buf: &mut Scratch,
    ) -> (f32, u32) {
        loop {
            self.links.read(best.1, layer, &mut buf.nbrs);
            self.sim_many(p, &buf.nbrs, &mut buf.scores);
            let prev = best.1;
            for (&s, &n) in buf.scores.iter().zip(&buf.nbrs) {
                if s > best.0 {
                    best = (s, n);
                }
            }
            if best.1 == prev {
                return best;
            }
        }
    }

    /// Best-first search of `layer` from `entries`, keeping the best `ef`.
    fn search_layer(
        &self,
        p: Probe<'_>,
        entries: &[(f32, u32)],
        ef: usize,
        layer: usize,
        visited: &mut Visited,
        buf: &mut Scratch,
    ) -> Candidates {
        visited.reset(self.ids.len());
        let mut pool = Candidates::new(ef);
        for &(s, n) in entries {
            if visited.insert(n) {
                pool.push(s, n);
            }
        }
        while let Some(c) = pool.next() {
            self.links.read(c, layer, &mut buf.nbrs);
            buf.fresh.clear();
            for &n in &buf.nbrs {
                if visited.insert(n) {
                    prefetch(self.code(n));
                    buf.fresh.push(n);
                }
            }
            self.sim_many(p, &buf.fresh, &mut buf.scores);
            for (&s, &n) in buf.scores.iter().zip(&buf.fresh) {
                pool.push(s, n);
            }
        }
        pool
    }

    /// HNSW's neighbour heuristic: walk candidates best first and keep one only if it is closer to
    /// the base than to every neighbour kept so far (spreads links across directions).
    fn select(&self, cands: &[(f32, u32)], m: usize) -> Vec<u32> {
        if cands.len() <= m {
            return cands.iter().map(|c| c.1).collect();
        }
        let mut kept: Vec<u32> = Vec::with_capacity(m);
        for &(s, c) in cands {
            if kept.len() >= m {
                break;
            }
            let pc = self.probe(c);
            if kept.iter().all(|&r| self.sim(pc, r) <= s) {
                kept.push(c);
            }
        }
        kept
    }

    /// Adds `q` to the neighbour list of `n` on `layer`, pruning with the heuristic when full.
    fn link_back(&self, n: u32, q: u32, layer: usize, buf: &mut Scratch) {
        let _guard = self.links.lock(n);
        self.links.read(n, layer, &mut buf.nbrs);
        if buf.nbrs.contains(&q) {
            return;
        }
        buf.nbrs.push(q);
        if buf.nbrs.len() <= self.links.cap(layer) {
            self.links.write(n, layer, &buf.nbrs);
            return;
        }
        let pn = self.probe(n);
        self.sim_many(pn, &buf.nbrs, &mut buf.scores);
        let mut cands: Vec<(f32, u32)> = buf
            .scores
            .iter()
            .copied()
            .zip(buf.nbrs.iter().copied())
            .collect();
        cands.sort_by(|a, b| b.0.total_cmp(&a.0));
        let kept = self.select(&cands, self.links.cap(layer));
        self.links.write(n, layer, &kept);
    }

    /// Links node `q` (already stored, level drawn) into the graph. Safe to run concurrently.
    fn insert(&self, q: u32) {
        let level = self.links.level(q);
        let mut guard = self.entry.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((ep, top)) = *guard else {
            *guard = Some((q, level));
            return;
        };
        // A node that raises the top level keeps the entry lock until it is linked (as hnswlib).
        let hold = if level > top {
            Some(guard)
        } else {
            drop(guard);
            None
        };
        let p = self.probe(q);
        let mut buf = Scratch::default();
        let mut best = (self.sim(p, ep), ep);
        for layer in (level + 1..=top).rev() {
            best = self.greedy(p, best, layer, &mut buf);
        }
        let mut entries = vec![best];
        let mut visited = self.visited.take(self.ids.len());
        for layer in (0..=level.min(top)).rev() {
            let pool = self.search_layer(
                p,
                &entries,
                self.params.ef_construction,
                layer,
                &mut visited,
                &mut buf,
            );
            entries.clear();
            entries.extend(
                pool.items()
                    .iter()
                    .filter(|c| c.node != q)
                    .map(|c| (c.score, c.node)),
            );
            let kept = self.select(&entries, self.params.m);
            {
                let _own = self.links.lock(q);
                self.links.write(q, layer, &kept);
            }
            for &n in &kept {
                self.link_back(n, q, layer, &mut buf);
            }
        }
        self.visited.give(visited);
        if let Some(mut g) = hold {
            *g = Some((q, level));
        }
    }

    fn prepare_query(&self, what: &str, query: &[f32]) -> CoreResult<Vec<f32>> {
        if query.len() != self.dim {
            return Err(CoreError::invalid(format!(
                "{what} has {} dimensions but the index has dim={}",
                query.len(),
                self.dim
            )));
        }
        check_finite(what, query)?;
        match self.metric {
            Metric::Ip => Ok(query.to_vec()),
            Metric::Cosine => normalized(what, query),
        }
    }

    /// Approximate best `k` (id, score) pairs for `query`, best first; `ef` (raised to `k`) is the
    /// candidate list size of the bottom-layer search, the recall/latency knob. Scores are exact f32.
    /// Needs the rows (`keep_rows`); see [`HnswIndex::candidates`] otherwise.
    pub fn search(&self, query: &[f32], k: usize, ef: usize) -> CoreResult<Vec<(u64, f32)>> {
        self.check_rows()?;
        let q = self.prepare_query("query", query)?;
        Ok(self.search_prepared(&q, k, ef))
    }

    /// The live ids of the bottom-layer candidate list for `query` (`ef` wide, at least `want` when
    /// that many rows live), best first by the int8 score: for a caller that re-ranks them exactly.
    pub fn candidates(&self, query: &[f32], want: usize, ef: usize) -> CoreResult<Vec<u64>> {
        let q = self.prepare_query("query", query)?;
        Ok(self
            .live_candidates(&q, want, ef)
            .into_iter()
            .map(|(_, n)| self.ids[n as usize])
            .collect())
    }

    fn check_rows(&self) -> CoreResult<()> {
        if self.params.keep_rows {
            Ok(())
        } else {
            Err(CoreError::invalid(
                "this index keeps no f32 rows (keep_rows=False): use candidates() and re-rank them",
            ))
        }
    }

    fn search_prepared(&self, q: &[f32], k: usize, ef: usize) -> Vec<(u64, f32)> {
        let mut hits: Vec<(f32, u32)> = self
            .live_candidates(q, k, ef)
            .into_iter()
            .map(|(_, node)| (simd::dot(q, self.row(node)), node))
            .collect();
        hits.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        hits.truncate(k);
        hits.into_iter()
            .map(|(s, n)| (self.ids[n as usize], s))
            .collect()
    }

    /// Live nodes of the bottom layer's candidate list with their int8 scores, best first. The list
    /// is `ef` wide (raised to `want`) and widened while tombstones leave fewer than `want` live.
    fn live_candidates(&self, q: &[f32], want: usize, ef: usize) -> Vec<(f32, u32)> {
        let want = want.min(self.live);
        let Some((ep, top)) = self.entry_point() else {
            return Vec::new();
        };
        if want == 0 {
            return Vec::new();
        }
        let mut codes = vec![0i8; self.dim];
        let scale = quantize_into(q, &mut codes);
        let p = Probe {
            codes: &codes,
            scale,
        };
        let mut buf = Scratch::default();
        let mut best = (self.sim(p, ep), ep);
        for layer in (1..=top).rev() {
            best = self.greedy(p, best, layer, &mut buf);
        }
        let mut visited = self.visited.take(self.ids.len());
        let mut ef = ef.max(want);
        let live = loop {
            let pool = self.search_layer(p, &[best], ef, 0, &mut visited, &mut buf);
            let live: Vec<(f32, u32)> = pool
                .items()
                .iter()
                .filter(|c| !self.deleted[c.node as usize])
                .map(|c| (c.score, c.node))
                .collect();
            // Tombstones can crowd live rows out of the list: widen until enough live ones are found.
            if live.len() >= want || ef >= self.ids.len() {
                break live;
            }
            ef = ef.saturating_mul(2);
        };
        self.visited.give(visited);
        live
    }

    /// [`HnswIndex::search`] for each row of `queries` (`m × dim`), queries in parallel.
    pub fn search_batch(
        &self,
        queries: &[f32],
        k: usize,
        ef: usize,
    ) -> CoreResult<Vec<Vec<(u64, f32)>>> {
        if queries.len() % self.dim != 0 {
            return Err(CoreError::invalid(format!(
                "queries must have dim={} columns",
                self.dim
            )));
        }
        self.check_rows()?;
        let mut prepared = Vec::with_capacity(queries.len());
        for (i, q) in queries.chunks_exact(self.dim).enumerate() {
            prepared.extend(self.prepare_query(&format!("query {i}"), q)?);
        }
        Ok(prepared
            .par_chunks_exact(self.dim)
            .map(|q| self.search_prepared(q, k, ef))
            .collect())
    }
}

/// Buffers reused across the steps of one insert or search.
#[derive(Default)]
struct Scratch {
    nbrs: Vec<u32>,
    fresh: Vec<u32>,
    scores: Vec<f32>,
}
