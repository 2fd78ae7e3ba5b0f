//! Recall and behaviour of [`HnswIndex`] against exact search.

use super::*;
use crate::errors::CoreResult;
use crate::vector::{normalized, Metric, VectorIndex};

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

/// Unit vectors around `clusters` centres, the shape of sentence embeddings.
fn clustered(rng: &mut Rng, n: usize, dim: usize, clusters: usize, spread: f32) -> Vec<f32> {
    let centres: Vec<f32> = (0..clusters * dim).map(|_| rng.normal()).collect();
    let mut out = Vec::with_capacity(n * dim);
    for i in 0..n {
        let c = (i * 7919) % clusters;
        let c = &centres[c * dim..(c + 1) * dim];
        let v: Vec<f32> = c.iter().map(|x| x + spread * rng.normal()).collect();
        out.extend(normalized("v", &v).unwrap_or(v));
    }
    out
}

fn recall(index: &HnswIndex, exact: &VectorIndex, queries: &[f32], k: usize, ef: usize) -> f64 {
    let (mut hit, mut total) = (0usize, 0usize);
    for q in queries.chunks_exact(index.dim()) {
        let got: Vec<u64> = index
            .search(q, k, ef)
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

fn build(metric: Metric, data: &[f32], dim: usize) -> CoreResult<(HnswIndex, VectorIndex)> {
    let n = data.len() / dim;
    let ids: Vec<u64> = (0..n as u64).map(|i| i * 3 + 1).collect();
    let mut h = HnswIndex::new(dim, metric, HnswParams::default())?;
    // Two batches: the second is linked into an existing graph.
    h.add(&ids[..n / 3], &data[..n / 3 * dim])?;
    h.add(&ids[n / 3..], &data[n / 3 * dim..])?;
    let mut e = VectorIndex::new(dim, metric)?;
    e.add(&ids, data)?;
    Ok((h, e))
}

#[test]
fn recall_at_10_on_clustered_embeddings() -> CoreResult<()> {
    let (n, dim, nq) = (5_000, 64, 50);
    let mut rng = Rng(42);
    let data = clustered(&mut rng, n + nq, dim, 50, 0.7);
    let (h, e) = build(Metric::Cosine, &data[..n * dim], dim)?;
    assert_eq!(h.len(), n);
    let r = recall(&h, &e, &data[n * dim..], 10, 64);
    assert!(r >= 0.95, "recall@10 = {r}");
    Ok(())
}

#[test]
fn recall_at_10_on_uniform_random_ip() -> CoreResult<()> {
    let (n, dim, nq) = (3_000, 32, 40);
    let mut rng = Rng(9);
    let data: Vec<f32> = (0..(n + nq) * dim).map(|_| rng.normal()).collect();
    let (h, e) = build(Metric::Ip, &data[..n * dim], dim)?;
    let r = recall(&h, &e, &data[n * dim..], 10, 200);
    assert!(r >= 0.9, "recall@10 = {r}");
    Ok(())
}

#[test]
fn stored_rows_find_themselves_with_exact_scores() -> CoreResult<()> {
    let dim = 16;
    let mut rng = Rng(3);
    let data = clustered(&mut rng, 1_000, dim, 20, 0.5);
    // Built on one thread, so the graph (and the count below) is the same on every run: with
    // parallel inserts it depended on the schedule and fell below the bar about once in 50 full
    // `cargo test` runs here (2026-12-02), as the recall test below once did in CI.
    let (h, _) = crate::pool::run_in(Some(1), || build(Metric::Cosine, &data, dim))??;
    // HNSW is approximate (neighbour pruning can leave a node hard to reach), so self-retrieval is
    // measured over every row rather than required of a sample.
    let mut found = 0;
    for i in 0..1_000 {
        let hits = h.search(&data[i * dim..(i + 1) * dim], 1, 32)?;
        if hits[0].0 == i as u64 * 3 + 1 {
            found += 1;
            assert!((hits[0].1 - 1.0).abs() < 1e-5);
        }
    }
    assert!(found >= 980, "{found}/1000 rows found themselves"); // measured: 993-999
    Ok(())
}

#[test]
fn removed_and_replaced_rows_are_never_returned() -> CoreResult<()> {
    let dim = 8;
    let mut rng = Rng(5);
    let data = clustered(&mut rng, 400, dim, 4, 0.3);
    let ids: Vec<u64> = (0..400).collect();
    let mut h = HnswIndex::new(dim, Metric::Cosine, HnswParams::default())?;
    // One thread: which 10 rows stay reachable past 390 tombstones must not depend on the schedule
    // (with parallel inserts this failed about once in 50 full `cargo test` runs).
    crate::pool::run_in(Some(1), || h.add(&ids, &data))??;
    let gone: Vec<u64> = (0..390).collect();
    assert_eq!(h.remove(&gone), 390);
    assert_eq!(h.remove(&[1, 2]), 0);
    assert_eq!(h.len(), 10);
    let hits = h.search(&data[..dim], 10, 16)?;
    let mut got: Vec<u64> = hits.iter().map(|x| x.0).collect();
    got.sort_unstable();
    assert_eq!(got, (390..400).collect::<Vec<_>>());
    // Replacing a row: the old vector no longer matches, the new one does.
    h.add(&[395], &data[..dim])?;
    assert_eq!(h.len(), 10);
    assert_eq!(h.nodes(), 401);
    let hits = h.search(&data[..dim], 1, 16)?;
    assert_eq!(hits[0].0, 395);
    Ok(())
}

#[test]
fn batch_search_matches_single_and_duplicates_keep_the_last_row() -> CoreResult<()> {
    let dim = 12;
    let mut rng = Rng(8);
    let data = clustered(&mut rng, 600, dim, 6, 0.5);
    let (h, _) = build(Metric::Ip, &data, dim)?;
    let queries = &data[..5 * dim];
    let batch = h.search_batch(queries, 4, 40)?;
    for (q, b) in queries.chunks_exact(dim).zip(&batch) {
        assert_eq!(&h.search(q, 4, 40)?, b);
    }
    let mut d = HnswIndex::new(2, Metric::Ip, HnswParams::default())?;
    d.add(&[7, 7], &[1.0, 0.0, 0.0, 1.0])?;
    assert_eq!(d.len(), 1);
    assert_eq!(d.search(&[0.0, 1.0], 5, 8)?, vec![(7, 1.0)]);
    Ok(())
}

#[test]
fn bad_input_is_rejected_without_changes() -> CoreResult<()> {
    assert!(HnswIndex::new(0, Metric::Ip, HnswParams::default()).is_err());
    let bad_m = HnswParams {
        m: 1,
        ..HnswParams::default()
    };
    assert!(HnswIndex::new(4, Metric::Ip, bad_m).is_err());
    let mut h = HnswIndex::new(2, Metric::Cosine, HnswParams::default())?;
    assert!(h.add(&[1], &[0.0, 0.0]).is_err());
    assert!(h.add(&[1, 2], &[1.0, 0.0, f32::NAN, 1.0]).is_err());
    assert!(h.add(&[1], &[1.0]).is_err());
    assert!(h.is_empty());
    assert!(h.search(&[1.0], 1, 8).is_err());
    assert!(h.search(&[1.0, 0.0], 3, 8)?.is_empty());
    Ok(())
}

#[test]
fn without_rows_candidates_re_ranked_exactly_equal_search() -> CoreResult<()> {
    let (dim, n) = (32, 3_000);
    let data = clustered(&mut Rng(21), n, dim, 40, 0.3);
    let ids: Vec<u64> = (0..n as u64).collect();
    let mut full = HnswIndex::new(dim, Metric::Cosine, HnswParams::default())?;
    let lean_params = HnswParams {
        keep_rows: false,
        ..HnswParams::default()
    };
    let mut lean = HnswIndex::new(dim, Metric::Cosine, lean_params)?;
    // Inserts run in parallel, so a graph depends on the thread schedule; built on one thread each,
    // the two graphs and the recall asserted below are the same on every run (with two threads the
    // agreement moved between runs: 474 / 500 once, in CI, under a loaded suite; 493 / 500 here).
    crate::pool::run_in(Some(1), || full.add(&ids, &data))??;
    crate::pool::run_in(Some(1), || lean.add(&ids, &data))??;
    assert_eq!(lean.nbytes() + n * dim * 4, full.nbytes()); // exactly the f32 rows saved
    assert!(lean.search(&data[..dim], 5, 32).is_err());
    assert!(lean.search_batch(&data[..dim], 5, 32).is_err());
    let mut exact = VectorIndex::new(dim, Metric::Cosine)?;
    exact.add(&ids, &data)?;
    let queries = clustered(&mut Rng(22), 50, dim, 40, 0.3);
    let (mut agree, mut total) = (0, 0);
    for q in queries.chunks_exact(dim) {
        let cands = lean.candidates(q, 10, 64)?;
        assert!(cands.len() >= 10 && cands.len() <= 64);
        let reranked = exact.search(q, 10, Some(&cands))?;
        let want = exact.search(q, 10, None)?;
        total += want.len();
        agree += want
            .iter()
            .filter(|w| reranked.iter().any(|r| r.0 == w.0))
            .count();
        assert_eq!(full.search(q, 10, 64)?.len(), 10);
    }
    assert!(agree as f64 / total as f64 >= 0.95, "{agree}/{total}");
    Ok(())
}
