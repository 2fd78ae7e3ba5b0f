//! `topk`, `topk_batch`, `VectorIndex`, `simd_level`.

use std::sync::RwLock;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::arrays::{
    array1, array_from, decode_section, id_list, ids_and_rows, query_row, readonly, NewArray,
};
use super::{read, write};
use crate::errors::CoreError;
use crate::vector::{self, check_k, Hit, Metric, VectorIndex};

/// (ids or positions, scores): two numpy arrays of one shape.
type Pair<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>);

/// The instruction set the kernels use on this machine: "avx2", "neon" or "scalar".
#[pyfunction]
pub fn simd_level() -> &'static str {
    vector::simd::simd_level().name()
}

fn split_hits(hits: &[Hit]) -> (Vec<i64>, Vec<f32>) {
    // Positions are < n <= isize::MAX, so they always fit an i64.
    hits.iter().map(|h| (h.pos as i64, h.score)).unzip()
}

/// Exact top-k rows of `matrix` for `query`: (indices, scores), best first.
///
/// The matrix is read in place, not copied, while the GIL is released. This is sound for the same
/// reason numpy's own GIL-free loops are: the read-only borrow guard and the array reference live
/// until the scan returns (so the buffer cannot be freed, resized or mutably borrowed by Rust code),
/// and concurrent writes from other Python threads are the caller's contract, as with `m @ q`.
#[pyfunction]
#[pyo3(signature = (matrix, query, k, metric = "ip"))]
pub fn topk<'py>(
    py: Python<'py>,
    matrix: &Bound<'py, PyAny>,
    query: &Bound<'py, PyAny>,
    k: i64,
    metric: &str,
) -> PyResult<Pair<'py>> {
    let metric = Metric::parse(metric)?;
    let k = check_k(k)?;
    let m = readonly::<f32>(matrix, "matrix", 2)?;
    let q = readonly::<f32>(query, "query", 1)?;
    let dim = m.shape()[1];
    if q.len() != dim {
        return Err(CoreError::invalid(format!(
            "query has {} dimensions but matrix has {dim} columns",
            q.len()
        ))
        .into());
    }
    if dim == 0 {
        return Err(CoreError::invalid("matrix must have at least one column").into());
    }
    let q = q.as_slice().to_vec();
    let rows = m.as_slice();
    let hits = py.detach(|| vector::topk(rows, dim, &q, k, metric))?;
    let (idx, scores) = split_hits(&hits);
    Ok((array1(py, &idx)?, array1(py, &scores)?))
}

/// Exact top-k for each row of `queries`: (indices, scores) of shape (m, min(k, n)).
/// The matrix is read in place with the GIL released; see [`topk`] for why that is sound.
#[pyfunction]
#[pyo3(signature = (matrix, queries, k, metric = "ip"))]
pub fn topk_batch<'py>(
    py: Python<'py>,
    matrix: &Bound<'py, PyAny>,
    queries: &Bound<'py, PyAny>,
    k: i64,
    metric: &str,
) -> PyResult<Pair<'py>> {
    let metric = Metric::parse(metric)?;
    let k = check_k(k)?;
    let m = readonly::<f32>(matrix, "matrix", 2)?;
    let qs = readonly::<f32>(queries, "queries", 2)?;
    let (n, dim) = (m.shape()[0], m.shape()[1]);
    let nq = qs.shape()[0];
    if qs.shape()[1] != dim {
        return Err(CoreError::invalid(format!(
            "queries have {} columns but matrix has {dim}",
            qs.shape()[1]
        ))
        .into());
    }
    if dim == 0 {
        return Err(CoreError::invalid("matrix must have at least one column").into());
    }
    let qv = qs.as_slice().to_vec();
    let rows = m.as_slice();
    let per_query = py.detach(|| vector::topk_batch(rows, dim, &qv, k, metric))?;
    let kk = k.min(n);
    let mut idx = Vec::with_capacity(nq * kk);
    let mut scores = Vec::with_capacity(nq * kk);
    for hits in &per_query {
        let (i, s) = split_hits(hits);
        idx.extend(i);
        scores.extend(s);
    }
    Ok((
        array_from(py, &idx, &[nq, kk])?,
        array_from(py, &scores, &[nq, kk])?,
    ))
}

/// Rust-owned vectors keyed by u64 ids; see `_rust_core.pyi`.
#[pyclass(name = "VectorIndex", module = "mcp_gemma._rust_core", frozen)]
pub struct PyVectorIndex {
    inner: RwLock<VectorIndex>,
}

#[pymethods]
impl PyVectorIndex {
    #[new]
    #[pyo3(signature = (dim, metric = "cosine", quantize = false, rerank = 4))]
    fn new(dim: i64, metric: &str, quantize: bool, rerank: i64) -> PyResult<Self> {
        if dim < 1 {
            return Err(CoreError::invalid(format!("dim must be >= 1, got {dim}")).into());
        }
        let mut index = VectorIndex::new(dim as usize, Metric::parse(metric)?)?;
        index.set_rerank(check_rerank(rerank)?)?;
        index.set_quantized(quantize);
        Ok(Self {
            inner: RwLock::new(index),
        })
    }

    fn to_bytes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = py.detach(|| read(&self.inner).map(|g| g.to_bytes()))?;
        Ok(PyBytes::new(py, &bytes))
    }

    #[staticmethod]
    #[pyo3(signature = (data, start = 0, stop = None))]
    fn from_bytes(
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        start: i64,
        stop: Option<i64>,
    ) -> PyResult<Self> {
        let index = decode_section(py, data, start, stop, VectorIndex::from_bytes)?;
        Ok(Self {
            inner: RwLock::new(index),
        })
    }

    fn add(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        vectors: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let dim = read(&self.inner)?.dim();
        let (ids_v, vecs) = ids_and_rows(ids, vectors, dim)?;
        py.detach(|| write(&self.inner)?.add(&ids_v, &vecs))?;
        Ok(())
    }

    fn remove(&self, py: Python<'_>, ids: &Bound<'_, PyAny>) -> PyResult<usize> {
        let ids_v = id_list(ids)?;
        Ok(py.detach(|| write(&self.inner).map(|mut g| g.remove(&ids_v)))?)
    }

    #[pyo3(signature = (query, k, allow = None))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        query: &Bound<'py, PyAny>,
        k: i64,
        allow: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Pair<'py>> {
        let k = check_k(k)?;
        let q = query_row(query)?;
        let allow = match allow {
            None => None,
            Some(a) => {
                let a_arr = readonly::<u64>(a, "allow", 1)?;
                Some(a_arr.as_slice().to_vec())
            }
        };
        let hits = py.detach(|| read(&self.inner)?.search(&q, k, allow.as_deref()))?;
        let (ids, scores): (Vec<u64>, Vec<f32>) = hits.into_iter().unzip();
        Ok((array1(py, &ids)?, array1(py, &scores)?))
    }

    fn search_batch<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
        k: i64,
    ) -> PyResult<Pair<'py>> {
        let k = check_k(k)?;
        let q_arr = readonly::<f32>(queries, "queries", 2)?;
        let (m, d) = (q_arr.shape()[0], q_arr.shape()[1]);
        let dim = read(&self.inner)?.dim();
        if d != dim {
            return Err(CoreError::invalid(format!(
                "queries have {d} columns but the index has dim={dim}"
            ))
            .into());
        }
        let q = q_arr.as_slice().to_vec();
        let per_query = py.detach(|| read(&self.inner)?.search_batch(&q, k))?;
        let kk = per_query.first().map_or(0, Vec::len);
        let mut ids = Vec::with_capacity(m * kk);
        let mut scores = Vec::with_capacity(m * kk);
        for hits in per_query {
            for (id, s) in hits {
                ids.push(id);
                scores.push(s);
            }
        }
        Ok((
            array_from(py, &ids, &[m, kk])?,
            array_from(py, &scores, &[m, kk])?,
        ))
    }

    fn get<'py>(
        &self,
        py: Python<'py>,
        id: &Bound<'py, PyAny>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let Ok(id) = id.extract::<u64>() else {
            return Ok(None);
        };
        read(&self.inner)?
            .get(id)
            .map(|row| array1(py, row))
            .transpose()
    }

    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Pair<'py>> {
        // One read lock for both: ids and rows describe the same moment.
        let g = read(&self.inner)?;
        let dim = g.dim();
        let ids = array1(py, g.ids())?;
        let n = g.len();
        let mut rows = NewArray::<f32>::new(py, &[n, dim], false)?;
        let out = rows.as_mut_slice();
        py.detach(|| {
            for (&id, dst) in g.ids().iter().zip(out.chunks_exact_mut(dim)) {
                let row = g
                    .get(id)
                    .ok_or_else(|| CoreError::internal(format!("id {id} listed but not stored")))?;
                dst.copy_from_slice(row);
            }
            Ok::<_, CoreError>(())
        })?;
        drop(g);
        Ok((ids, rows.finish()))
    }

    fn contains(&self, id: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(id) = id.extract::<u64>() else {
            return Ok(false);
        };
        Ok(read(&self.inner)?.contains(id))
    }

    fn __contains__(&self, id: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.contains(id)
    }

    fn ids<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        array1(py, read(&self.inner)?.ids())
    }

    fn set_quantized(&self, py: Python<'_>, on: bool) -> PyResult<()> {
        py.detach(|| write(&self.inner).map(|mut g| g.set_quantized(on)))?;
        Ok(())
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(read(&self.inner)?.len())
    }

    fn __repr__(&self) -> PyResult<String> {
        let g = read(&self.inner)?;
        Ok(format!(
            "VectorIndex(dim={}, metric={:?}, len={}, quantized={})",
            g.dim(),
            g.metric().name(),
            g.len(),
            if g.is_quantized() { "True" } else { "False" }
        ))
    }

    #[getter]
    fn dim(&self) -> PyResult<usize> {
        Ok(read(&self.inner)?.dim())
    }

    #[getter]
    fn metric(&self) -> PyResult<&'static str> {
        Ok(read(&self.inner)?.metric().name())
    }

    #[getter]
    fn nbytes(&self) -> PyResult<usize> {
        Ok(read(&self.inner)?.nbytes())
    }

    #[getter]
    fn quantized(&self) -> PyResult<bool> {
        Ok(read(&self.inner)?.is_quantized())
    }

    #[getter]
    fn rerank(&self) -> PyResult<usize> {
        Ok(read(&self.inner)?.rerank())
    }
}

fn check_rerank(rerank: i64) -> Result<usize, CoreError> {
    usize::try_from(rerank)
        .ok()
        .filter(|&r| r >= 1)
        .ok_or_else(|| CoreError::invalid(format!("rerank must be >= 1, got {rerank}")))
}
