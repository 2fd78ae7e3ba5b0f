//! `fuse_rrf` and `fuse_weighted`.

use pyo3::prelude::*;

use crate::fusion;

/// Reciprocal rank fusion of ranked id lists; best first.
#[pyfunction]
#[pyo3(signature = (rankings, k = 60, limit = None))]
pub fn fuse_rrf(
    rankings: Vec<Vec<u64>>,
    k: u32,
    limit: Option<usize>,
) -> PyResult<Vec<(u64, f64)>> {
    Ok(fusion::rrf(&rankings, f64::from(k), limit)?)
}

/// Min-max-normalised weighted sum of two scored lists; best first.
#[pyfunction]
pub fn fuse_weighted(
    a: Vec<(u64, f64)>,
    b: Vec<(u64, f64)>,
    weight_b: f64,
) -> PyResult<Vec<(u64, f64)>> {
    Ok(fusion::weighted(&a, &b, weight_b)?)
}
