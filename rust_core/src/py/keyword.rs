//! `BM25Index` and `tokenize`.

use std::sync::RwLock;

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::arrays::{array1, decode_section, readonly, Element};
use super::{arg, read, write};
use crate::errors::CoreError;
use crate::keyword::{Analyzer, Bm25Index};
use crate::vector::check_k;

/// The terms `BM25Index` indexes for `text` under `analyzer` ("plain": lower-cased UAX #29 words).
#[pyfunction]
#[pyo3(signature = (text, analyzer = "plain"))]
pub fn tokenize(py: Python<'_>, text: &str, analyzer: &str) -> PyResult<Vec<String>> {
    let analyzer = Analyzer::parse(analyzer)?;
    let text = text.to_owned();
    Ok(py.detach(|| analyzer.analyze(&text)))
}

/// In-memory BM25 index; see `_rust_core.pyi`.
#[pyclass(name = "BM25Index", module = "mcp_gemma._rust_core", frozen)]
pub struct PyBm25Index {
    inner: RwLock<Bm25Index>,
}

impl PyBm25Index {
    fn analyzer_of(&self) -> PyResult<Analyzer> {
        Ok(read(&self.inner)?.analyzer())
    }

    /// `each(index, query, ids)` for a 1-d uint64 `ids` array, run without the GIL: one value
    /// per id, as a new 1-d array (the shape of `scores` and `coverage_many`).
    fn per_id<'py, T: Element>(
        &self,
        py: Python<'py>,
        query: &str,
        ids: &Bound<'py, PyAny>,
        each: impl Fn(&Bm25Index, &str, &[u64]) -> Vec<T> + Send + Sync,
    ) -> PyResult<Bound<'py, PyAny>> {
        let arr = readonly::<u64>(ids, "ids", 1)?;
        let ids = arr.as_slice().to_vec();
        let query = query.to_owned();
        let out = py.detach(|| read(&self.inner).map(|g| each(&g, &query, &ids)))?;
        array1(py, &out)
    }
}

#[pymethods]
impl PyBm25Index {
    #[new]
    #[pyo3(signature = (k1 = 1.2, b = 0.75, analyzer = "plain"))]
    fn new(k1: f32, b: f32, analyzer: &str) -> PyResult<Self> {
        let analyzer = Analyzer::parse(analyzer)?;
        Ok(Self {
            inner: RwLock::new(Bm25Index::with_analyzer(k1, b, analyzer)?),
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
        let index = decode_section(py, data, start, stop, Bm25Index::from_bytes)?;
        Ok(Self {
            inner: RwLock::new(index),
        })
    }

    fn add(&self, py: Python<'_>, id: &Bound<'_, PyAny>, text: &str) -> PyResult<()> {
        let id: u64 = arg(id, "id", "an int in [0, 2**64)")?;
        let text = text.to_owned();
        let analyzer = self.analyzer_of()?;
        py.detach(|| {
            let tokens = analyzer.analyze(&text);
            write(&self.inner).map(|mut g| g.add_tokens(id, tokens))
        })?;
        Ok(())
    }

    fn add_many(
        &self,
        py: Python<'_>,
        ids: &Bound<'_, PyAny>,
        texts: &Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let ids: Vec<u64> = arg(ids, "ids", "a sequence of ints in [0, 2**64)")?;
        let texts: Vec<String> = arg(texts, "texts", "a sequence of str")?;
        if ids.len() != texts.len() {
            return Err(CoreError::invalid(format!(
                "got {} ids but {} texts",
                ids.len(),
                texts.len()
            ))
            .into());
        }
        let analyzer = self.analyzer_of()?;
        py.detach(|| {
            // Tokenise outside the lock so readers are not held up.
            let tokens = analyzer.analyze_all(&texts);
            let mut g = write(&self.inner)?;
            for (id, toks) in ids.into_iter().zip(tokens) {
                g.add_tokens(id, toks);
            }
            Ok::<(), CoreError>(())
        })?;
        Ok(())
    }

    fn remove(&self, py: Python<'_>, id: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(id) = id.extract::<u64>() else {
            return Ok(false);
        };
        Ok(py.detach(|| write(&self.inner).map(|mut g| g.remove(id)))?)
    }

    #[pyo3(signature = (query, k, allow = None))]
    fn search<'py>(
        &self,
        py: Python<'py>,
        query: &str,
        k: i64,
        allow: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let k = check_k(k)?;
        let query = query.to_owned();
        let allow = match allow {
            None => None,
            Some(a) => {
                let arr = readonly::<u64>(a, "allow", 1)?;
                Some(arr.as_slice().to_vec())
            }
        };
        let hits =
            py.detach(|| read(&self.inner).map(|g| g.search(&query, k, allow.as_deref())))?;
        let (ids, scores): (Vec<u64>, Vec<f32>) = hits.into_iter().unzip();
        Ok((array1(py, &ids)?, array1(py, &scores)?))
    }

    fn scores<'py>(
        &self,
        py: Python<'py>,
        query: &str,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.per_id(py, query, ids, Bm25Index::scores)
    }

    fn coverage(&self, py: Python<'_>, query: &str, id: &Bound<'_, PyAny>) -> PyResult<f32> {
        let Ok(id) = id.extract::<u64>() else {
            return Ok(0.0);
        };
        let query = query.to_owned();
        Ok(py.detach(|| read(&self.inner).map(|g| g.coverage(&query, id)))?)
    }

    fn coverage_many<'py>(
        &self,
        py: Python<'py>,
        query: &str,
        ids: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        self.per_id(py, query, ids, Bm25Index::coverage_many)
    }

    fn max_score(&self, py: Python<'_>, query: &str) -> PyResult<f32> {
        let query = query.to_owned();
        Ok(py.detach(|| read(&self.inner).map(|g| g.max_score(&query)))?)
    }

    #[getter]
    fn analyzer(&self) -> PyResult<&'static str> {
        Ok(self.analyzer_of()?.name())
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(read(&self.inner)?.len())
    }

    fn __contains__(&self, id: &Bound<'_, PyAny>) -> PyResult<bool> {
        let Ok(id) = id.extract::<u64>() else {
            return Ok(false);
        };
        Ok(read(&self.inner)?.contains(id))
    }

    fn __repr__(&self) -> PyResult<String> {
        let g = read(&self.inner)?;
        Ok(format!(
            "BM25Index(k1={}, b={}, analyzer={:?}, len={}, vocab_size={})",
            g.k1(),
            g.b(),
            g.analyzer().name(),
            g.len(),
            g.vocab_size()
        ))
    }

    #[getter]
    fn vocab_size(&self) -> PyResult<usize> {
        Ok(read(&self.inner)?.vocab_size())
    }

    #[getter]
    fn k1(&self) -> PyResult<f32> {
        Ok(read(&self.inner)?.k1())
    }

    #[getter]
    fn b(&self) -> PyResult<f32> {
        Ok(read(&self.inner)?.b())
    }
}
