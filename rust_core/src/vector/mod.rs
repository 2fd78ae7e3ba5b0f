//! Exact f32 top-k over contiguous rows (inner product or cosine), the int8-quantised variant, and
//! the Rust-owned [`VectorIndex`] keyed by u64 ids.

#[cfg(all(target_arch = "x86_64", q8_avx512))]
mod avx512;
pub mod index;
pub mod quant;
pub mod scan;
pub mod simd;
pub mod storage;
pub mod topk;

pub use index::VectorIndex;
pub use topk::Hit;

use crate::errors::{CoreError, CoreResult};

/// Similarity measure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Inner product.
    Ip,
    /// Cosine similarity.
    Cosine,
}

impl Metric {
    /// Parses `"ip"` or `"cosine"`.
    pub fn parse(s: &str) -> CoreResult<Self> {
        match s {
            "ip" => Ok(Self::Ip),
            "cosine" => Ok(Self::Cosine),
            other => Err(CoreError::invalid(format!(
                "metric must be 'ip' or 'cosine', got {other:?}"
            ))),
        }
    }

    /// The name Python sees.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ip => "ip",
            Self::Cosine => "cosine",
        }
    }
}

/// Checks `k` as it comes from Python (a signed int).
pub fn check_k(k: i64) -> CoreResult<usize> {
    if k < 1 {
        return Err(CoreError::invalid(format!("k must be >= 1, got {k}")));
    }
    Ok(usize::try_from(k).unwrap_or(usize::MAX))
}

/// Rejects NaN / infinite values in a query.
pub fn check_finite(what: &str, v: &[f32]) -> CoreResult<()> {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(CoreError::invalid(format!(
            "{what} contains a non-finite value ({}) at position {i}",
            v[i]
        ))),
    }
}

/// Unit-length copy of `v`; a zero vector is an error for cosine.
pub fn normalized(what: &str, v: &[f32]) -> CoreResult<Vec<f32>> {
    let n = simd::dot(v, v).sqrt();
    if n == 0.0 {
        return Err(CoreError::invalid(format!(
            "{what} has zero norm; cosine similarity is undefined"
        )));
    }
    Ok(v.iter().map(|x| x / n).collect())
}

/// Exact top-`k` of `query` over the `n × dim` row-major `matrix`, best first (`k` clipped to n).
pub fn topk(
    matrix: &[f32],
    dim: usize,
    query: &[f32],
    k: usize,
    metric: Metric,
) -> CoreResult<Vec<Hit>> {
    if dim == 0 || query.len() != dim || matrix.len() % dim != 0 {
        return Err(CoreError::invalid(format!(
            "query has {} dimensions but the matrix rows have {dim}",
            query.len()
        )));
    }
    check_finite("query", query)?;
    let k = k.min(matrix.len() / dim);
    if k == 0 {
        return Ok(Vec::new());
    }
    Ok(match metric {
        Metric::Ip => scan::topk_ip(matrix, dim, query, k),
        Metric::Cosine => scan::topk_cosine(matrix, dim, &normalized("query", query)?, k),
    })
}

/// Exact top-`k` for each of the `m × dim` `queries`.
pub fn topk_batch(
    matrix: &[f32],
    dim: usize,
    queries: &[f32],
    k: usize,
    metric: Metric,
) -> CoreResult<Vec<Vec<Hit>>> {
    if dim == 0 || queries.len() % dim != 0 || matrix.len() % dim != 0 {
        return Err(CoreError::invalid(format!(
            "queries and matrix rows must both have {dim} dimensions"
        )));
    }
    check_finite("queries", queries)?;
    let m = queries.len() / dim;
    let k = k.min(matrix.len() / dim);
    if k == 0 {
        return Ok(vec![Vec::new(); m]);
    }
    match metric {
        Metric::Ip => Ok(scan::topk_batch(matrix, dim, queries, k, false)),
        Metric::Cosine => {
            let mut unit = Vec::with_capacity(queries.len());
            for (i, q) in queries.chunks_exact(dim).enumerate() {
                unit.extend(normalized(&format!("query {i}"), q)?);
            }
            Ok(scan::topk_batch(matrix, dim, &unit, k, true))
        }
    }
}
