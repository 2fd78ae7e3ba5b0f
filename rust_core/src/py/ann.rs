//! `HnswIndex`: the approximate index of `crate::ann`.

use std::sync::RwLock;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::arrays::{
    array1, array_from, decode_section, id_list, ids_and_rows, query_row, readonly,
};
use super::{read, write};
use crate::ann::{HnswIndex, HnswParams, MAX_M};
use crate::errors::CoreError;
use crate::vector::{check_k, Metric};

/// (ids, scores): two numpy arrays of one shape.
type Pair<'py> = (Bound<'py, PyAny>, Bound<'py, PyAny>);

/// HNSW graph over int8 codes with an exact f32 re-rank; see `_rust_core.pyi`.
#[pyclass(name = "HnswIndex", module = "mcp_gemma._rust_core", frozen)]
pub struct PyHnswIndex {
    inner: RwLock<HnswIndex>,
}

fn positive(value: i64, name: &str) -> Result<usize, CoreError> {
    usize::try_from(value)
        .ok()
        .filter(|&v| v >= 1)
        .ok_or_else(|| CoreError::invalid(format!("{name} must be >= 1, got {value}")))
}

fn check_m(m: i64) -> Result<usize, CoreError> {
    usize::try_from(m)
        .ok()
        .filter(|v| (2..=MAX_M).contains(v))
        .ok_or_else(|| CoreError::invalid(format!("m must be between 2 and {MAX_M}, got {m}")))
}

#[pymethods]
impl PyHnswIndex {
    #[new]
    #[pyo3(signature = (dim, metric = "cosine", m = 16, ef_construction = 200, seed = 0, keep_rows = true))]
    fn new(
        dim: i64,
        metric: &str,
        m: i64,
        ef_construction: i64,
        seed: u64,
        keep_rows: bool,
    ) -> PyResult<Self> {
        let params = HnswParams {
            m: check_m(m)?,
            ef_construction: positive(ef_construction, "ef_construction")?,
            seed,
            keep_rows,
        };
        let index = HnswIndex::new(positive(dim, "dim")?, Metric::parse(metric)?, params)?;
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
        let index = decode_section(py, data, start, stop, HnswIndex::from_bytes)?;
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

    #[pyo3(signature = (query, k, ef = 64))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        query: &Bound<'py, PyAny>,
        k: i64,
        ef: i64,
    ) -> PyResult<Pair<'py>> {
        let k = check_k(k)?;
        let ef = positive(ef, "ef")?;
        let q = query_row(query)?;
        let hits = py.detach(|| read(&self.inner)?.search(&q, k, ef))?;
        let (ids, scores): (Vec<u64>, Vec<f32>) = hits.into_iter().unzip();
        Ok((array1(py, &ids)?, array1(py, &scores)?))
    }

    #[pyo3(signature = (query, want, ef = 64))]
    fn candidates<'py>(
        &self,
        py: Python<'py>,
        query: &Bound<'py, PyAny>,
        want: i64,
        ef: i64,
    ) -> PyResult<Bound<'py, PyAny>> {
        let want = check_k(want)?;
        let ef = positive(ef, "ef")?;
        let q = query_row(query)?;
        let ids = py.detach(|| read(&self.inner)?.candidates(&q, want, ef))?;
        array1(py, &ids)
    }

    #[pyo3(signature = (queries, k, ef = 64))]
    fn search_batch<'py>(
        &self,
        py: Python<'py>,
        queries: &Bound<'py, PyAny>,
        k: i64,
        ef: i64,
    ) -> PyResult<Pair<'py>> {
        let k = check_k(k)?;
        let ef = positive(ef, "ef")?;
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
        let per_query = py.detach(|| read(&self.inner)?.search_batch(&q, k, ef))?;
        // Every query returns min(k, len) hits (search widens past tombstones until it has them).
        let kk = per_query.first().map_or(0, Vec::len);
        let mut ids = Vec::with_capacity(m * kk);
        let mut scores = Vec::with_capacity(m * kk);
        for hits in per_query {
            if hits.len() != kk {
                return Err(CoreError::internal("search_batch returned ragged results").into());
            }
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

    fn contains(&self, id: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(id) = id.extract::<u64>() else {
            return Ok(false);
        };
        Ok(read(&self.inner)?.contains(id))
    }

    fn __contains__(&self, id: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.contains(id)
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(read(&self.inner)?.len())
    }

    fn __repr__(&self) -> PyResult<String> {
        let g = read(&self.inner)?;
        let p = g.params();
        Ok(format!(
            "HnswIndex(dim={}, metric='{}', m={}, ef_construction={}, len={})",
            g.dim(),
            g.metric().name(),
            p.m,
            p.ef_construction,
            g.len()
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
    fn m(&self) -> PyResult<usize> {
        Ok(read(&self.inner)?.params().m)
    }

    #[getter]
    fn ef_construction(&self) -> PyResult<usize> {
        Ok(read(&self.inner)?.params().ef_construction)
    }

    #[getter]
    fn keep_rows(&self) -> PyResult<bool> {
        Ok(read(&self.inner)?.params().keep_rows)
    }

    #[getter]
    fn nbytes(&self) -> PyResult<usize> {
        Ok(read(&self.inner)?.nbytes())
    }

    #[getter]
    fn tombstones(&self) -> PyResult<usize> {
        let g = read(&self.inner)?;
        Ok(g.nodes() - g.len())
    }
}
