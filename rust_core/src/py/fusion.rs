//! `fuse_rrf` and `fuse_weighted`.

use pyo3::prelude::*;

use super::arg;
use crate::errors::CoreError;
use crate::fusion;

/// Reciprocal rank fusion of ranked id lists; best first.
#[pyfunction]
#[pyo3(signature = (rankings, k = 60, limit = None))]
pub fn fuse_rrf(
    rankings: &Bound<'_, PyAny>,
    k: i64,
    limit: Option<&Bound<'_, PyAny>>,
) -> PyResult<Vec<(u64, f64)>> {
    if k < 0 {
        return Err(CoreError::invalid(format!("k must be >= 0, got {k}")).into());
    }
    let rankings: Vec<Vec<u64>> = arg(
        rankings,
        "rankings",
        "a sequence of sequences of ints in [0, 2**64)",
    )?;
    let limit: Option<usize> = limit
        .map(|l| arg(l, "limit", "an int >= 0 or None"))
        .transpose()?;
    Ok(fusion::rrf(&rankings, k as f64, limit)?)
}

/// Min-max-normalised weighted sum of two scored lists; best first.
#[pyfunction]
pub fn fuse_weighted(
    a: &Bound<'_, PyAny>,
    b: &Bound<'_, PyAny>,
    weight_b: f64,
) -> PyResult<Vec<(u64, f64)>> {
    let a: Vec<(u64, f64)> = arg(a, "a", "a sequence of (id, score) pairs")?;
    let b: Vec<(u64, f64)> = arg(b, "b", "a sequence of (id, score) pairs")?;
    Ok(fusion::weighted(&a, &b, weight_b)?)
}
