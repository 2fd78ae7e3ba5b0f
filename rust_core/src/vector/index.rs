//! [`VectorIndex`]: Rust-owned contiguous rows keyed by u64 ids, exact f32 search with an optional
//! int8 first pass re-ranked in f32.

use rustc_hash::FxHashMap as HashMap;

use super::quant::QuantStore;
use super::topk::{Hit, TopK};
use super::{check_finite, normalized, scan, simd, storage, Metric};
use crate::errors::{CoreError, CoreResult};

mod persist;

/// Rows keyed by id. Cosine indexes store unit-length rows so a search is one inner product.
#[derive(Debug, Clone)]
pub struct VectorIndex {
    dim: usize,
    metric: Metric,
    ids: Vec<u64>,
    slots: HashMap<u64, usize>,
    data: Vec<f32>,
    quant: Option<QuantStore>,
    rerank: usize,
}

impl VectorIndex {
    /// An empty index of `dim`-dimensional rows.
    pub fn new(dim: usize, metric: Metric) -> CoreResult<Self> {
        if dim == 0 {
            return Err(CoreError::invalid("dim must be >= 1"));
        }
        Ok(Self {
            dim,
            metric,
            ids: Vec::new(),
            slots: HashMap::default(),
            data: Vec::new(),
            quant: None,
            rerank: 4,
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

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    /// Whether searches scan int8 codes first.
    pub fn is_quantized(&self) -> bool {
        self.quant.is_some()
    }

    /// Candidates re-ranked in f32 per result when quantised (`k * rerank`).
    pub fn rerank(&self) -> usize {
        self.rerank
    }

    /// Turns the int8 first pass on (building codes for every row) or off (dropping them).
    pub fn set_quantized(&mut self, on: bool) {
        self.quant = on.then(|| QuantStore::from_rows(&self.data, self.dim));
    }

    /// Sets the re-rank depth (>= 1).
    pub fn set_rerank(&mut self, rerank: usize) -> CoreResult<()> {
        if rerank == 0 {
            return Err(CoreError::invalid("rerank must be >= 1"));
        }
        self.rerank = rerank;
        Ok(())
    }

    /// Bytes held by rows, ids and codes (hash-map overhead not counted).
    pub fn nbytes(&self) -> usize {
        self.data.len() * 4 + self.ids.len() * 8 + self.quant.as_ref().map_or(0, QuantStore::nbytes)
    }

    /// Upserts `ids` with the rows of `vectors` (`ids.len() × dim`). All-or-nothing: the input is
    /// validated before anything changes. A repeated id keeps its last row.
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
        storage::reserve(&mut self.data, rows.len());
        if let Some(q) = &mut self.quant {
            storage::reserve(&mut q.codes, rows.len());
        }
        for (row, &id) in rows.chunks_exact(self.dim).zip(ids) {
            match self.slots.get(&id) {
                Some(&slot) => {
                    self.data[slot * self.dim..(slot + 1) * self.dim].copy_from_slice(row);
                    if let Some(q) = &mut self.quant {
                        q.set(slot, row, self.dim);
                    }
                }
                None => {
                    self.slots.insert(id, self.ids.len());
                    self.ids.push(id);
                    self.data.extend_from_slice(row);
                    if let Some(q) = &mut self.quant {
                        q.push(row, self.dim);
                    }
                }
            }
        }
        Ok(())
    }

    /// Removes `ids` (unknown ids are ignored) and returns how many were present. The last row moves
    /// into each hole, so storage stays contiguous.
    pub fn remove(&mut self, ids: &[u64]) -> usize {
        let mut removed = 0;
        for id in ids {
            let Some(slot) = self.slots.remove(id) else {
                continue;
            };
            removed += 1;
            let last = self.ids.len() - 1;
            if slot != last {
                let moved = self.ids[last];
                self.ids[slot] = moved;
                self.slots.insert(moved, slot);
                self.data
                    .copy_within(last * self.dim..(last + 1) * self.dim, slot * self.dim);
            }
            self.ids.pop();
            self.data.truncate(last * self.dim);
            if let Some(q) = &mut self.quant {
                q.swap_remove(slot, self.dim);
            }
        }
        removed
    }

    /// The stored row of `id` (unit length for cosine indexes).
    pub fn get(&self, id: u64) -> Option<&[f32]> {
        self.slots
            .get(&id)
            .map(|&s| &self.data[s * self.dim..(s + 1) * self.dim])
    }

    /// Whether `id` is stored.
    pub fn contains(&self, id: u64) -> bool {
        self.slots.contains_key(&id)
    }

    /// Stored ids in storage order.
    pub fn ids(&self) -> &[u64] {
        &self.ids
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

    /// Best `k` (id, score) pairs for `query`, restricted to the ids in `allow` when given; the
    /// restriction is applied inside the scan, so `k` results come back whenever enough ids qualify.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        allow: Option<&[u64]>,
    ) -> CoreResult<Vec<(u64, f32)>> {
        let q = self.prepare_query("query", query)?;
        let positions: Option<Vec<usize>> = allow.map(|ids| {
            let mut p: Vec<usize> = ids
                .iter()
                .filter_map(|id| self.slots.get(id).copied())
                .collect();
            p.sort_unstable();
            p.dedup();
            p
        });
        let n = positions.as_ref().map_or(self.len(), Vec::len);
        let k = k.min(n);
        if k == 0 {
            return Ok(Vec::new());
        }
        let ids = &self.ids;
        let hits = match (&self.quant, positions.as_deref()) {
            (Some(quant), pos) => {
                let depth = k.saturating_mul(self.rerank).min(n);
                let mut exact = TopK::new(k);
                for h in quant.topk(self.dim, &q, depth, pos) {
                    let slot = pos.map_or(h.pos, |p| p[h.pos]);
                    exact.push(
                        simd::dot(&q, &self.data[slot * self.dim..(slot + 1) * self.dim]),
                        slot,
                    );
                }
                exact.into_sorted()
            }
            (None, Some(p)) => scan::topk_ip_subset(&self.data, self.dim, &q, p, k)
                .into_iter()
                .map(|h| Hit { pos: p[h.pos], ..h })
                .collect(),
            (None, None) => scan::topk_ip(&self.data, self.dim, &q, k),
        };
        Ok(hits.iter().map(|h| (ids[h.pos], h.score)).collect())
    }

    /// [`VectorIndex::search`] for each row of `queries` (`m × dim`).
    pub fn search_batch(&self, queries: &[f32], k: usize) -> CoreResult<Vec<Vec<(u64, f32)>>> {
        if queries.len() % self.dim != 0 {
            return Err(CoreError::invalid(format!(
                "queries must have dim={} columns",
                self.dim
            )));
        }
        let mut prepared = Vec::with_capacity(queries.len());
        for (i, q) in queries.chunks_exact(self.dim).enumerate() {
            prepared.extend(self.prepare_query(&format!("query {i}"), q)?);
        }
        let m = queries.len() / self.dim;
        let k = k.min(self.len());
        if k == 0 {
            return Ok(vec![Vec::new(); m]);
        }
        if self.quant.is_some() {
            return prepared
                .chunks_exact(self.dim)
                .map(|q| self.search(q, k, None))
                .collect();
        }
        Ok(scan::topk_batch(&self.data, self.dim, &prepared, k, false)
            .into_iter()
            .map(|hits| hits.iter().map(|h| (self.ids[h.pos], h.score)).collect())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Rng(u64);
    impl Rng {
        fn uniform(&mut self) -> f32 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((self.0 >> 40) as f32 + 0.5) / 16_777_216.0
        }
        fn normal(&mut self) -> f32 {
            let (u, v) = (self.uniform(), self.uniform());
            (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
        }
    }

    /// Normalised vectors around `clusters` centres: the shape of sentence embeddings, where
    /// neighbours are close and the int8 error is small next to the gaps between them.
    fn clustered(rng: &mut Rng, n: usize, dim: usize, clusters: usize, spread: f32) -> Vec<f32> {
        let centres: Vec<f32> = (0..clusters * dim).map(|_| rng.normal()).collect();
        let mut out = Vec::with_capacity(n * dim);
        for i in 0..n {
            let c = &centres[(i % clusters) * dim..(i % clusters + 1) * dim];
            let v: Vec<f32> = c.iter().map(|x| x + spread * rng.normal()).collect();
            out.extend(normalized("v", &v).unwrap_or(v));
        }
        out
    }

    fn recall_at(index: &VectorIndex, exact: &VectorIndex, queries: &[f32], k: usize) -> f64 {
        let mut hit = 0usize;
        let mut total = 0usize;
        for q in queries.chunks_exact(index.dim()) {
            let got: Vec<u64> = index
                .search(q, k, None)
                .unwrap_or_default()
                .iter()
                .map(|h| h.0)
                .collect();
            let want = exact.search(q, k, None).unwrap_or_default();
            total += want.len();
            hit += want.iter().filter(|w| got.contains(&w.0)).count();
        }
        hit as f64 / total as f64
    }

    #[test]
    fn int8_recall_at_10_on_clustered_embeddings() -> CoreResult<()> {
        let (n, dim, nq) = (20_000, 384, 30);
        let mut rng = Rng(42);
        let data = clustered(&mut rng, n + nq, dim, 200, 0.6);
        let ids: Vec<u64> = (0..n as u64).collect();
        let mut exact = VectorIndex::new(dim, Metric::Cosine)?;
        exact.add(&ids, &data[..n * dim])?;
        let mut quant = exact.clone();
        quant.set_quantized(true);
        let recall = recall_at(&quant, &exact, &data[n * dim..], 10);
        assert!(recall >= 0.99, "recall@10 = {recall}");
        Ok(())
    }

    #[test]
    fn upsert_replaces_and_remove_compacts() -> CoreResult<()> {
        let mut idx = VectorIndex::new(2, Metric::Ip)?;
        idx.add(&[1, 2, 3], &[1.0, 0.0, 0.0, 1.0, 0.5, 0.5])?;
        idx.add(&[2], &[2.0, 2.0])?;
        assert_eq!(idx.len(), 3);
        assert_eq!(idx.get(2), Some(&[2.0f32, 2.0][..]));
        assert_eq!(idx.remove(&[1, 9]), 1);
        assert_eq!(idx.len(), 2);
        assert!(!idx.contains(1));
        assert_eq!(idx.get(3), Some(&[0.5f32, 0.5][..]));
        let hits = idx.search(&[1.0, 1.0], 5, None)?;
        assert_eq!(hits, vec![(2, 4.0), (3, 1.0)]);
        let hits = idx.search(&[1.0, 1.0], 5, Some(&[3, 1, 77]))?;
        assert_eq!(hits, vec![(3, 1.0)]);
        assert_eq!(idx.nbytes(), 2 * 2 * 4 + 2 * 8);
        Ok(())
    }

    #[test]
    fn quantized_index_follows_upserts_and_removes() -> CoreResult<()> {
        let mut rng = Rng(7);
        let dim = 48;
        let data = clustered(&mut rng, 500, dim, 10, 0.5);
        let ids: Vec<u64> = (0..500).collect();
        let mut idx = VectorIndex::new(dim, Metric::Cosine)?;
        idx.set_quantized(true);
        idx.add(&ids, &data)?;
        idx.remove(&(0..250).collect::<Vec<_>>());
        let q = &data[300 * dim..301 * dim];
        let hits = idx.search(q, 3, None)?;
        assert_eq!(hits[0].0, 300);
        let allowed = idx.search(q, 3, Some(&[1, 2, 499]))?;
        assert_eq!(allowed.len(), 1);
        assert_eq!(allowed[0].0, 499);
        Ok(())
    }

    #[test]
    fn bad_input_is_rejected_without_changes() -> CoreResult<()> {
        let mut idx = VectorIndex::new(2, Metric::Cosine)?;
        assert!(idx.add(&[1], &[0.0, 0.0]).is_err());
        assert!(idx.add(&[1, 2], &[1.0, 0.0, f32::NAN, 1.0]).is_err());
        assert!(idx.is_empty());
        assert!(idx.search(&[1.0], 1, None).is_err());
        Ok(())
    }
}
