//! `BM25Index` and `tokenize`.

use std::sync::RwLock;

use numpy::ndarray::Ix1;
use numpy::{IntoPyArray, PyArray1};
use pyo3::prelude::*;
use rayon::prelude::*;

use super::arrays::{readonly, slice};
use super::{arg, read, write};
use crate::errors::CoreError;
use crate::keyword::{self, Bm25Index};
use crate::vector::check_k;

/// Lower-cased Unicode words (UAX #29): the tokens `BM25Index` indexes.
#[pyfunction]
pub fn tokenize(py: Python<'_>, text: &str) -> Vec<String> {
    let text = text.to_owned();
    py.detach(|| keyword::tokenize(&text))
}

/// In-memory BM25 index; see `_rust_core.pyi`.
#[pyclass(name = "BM25Index", module = "mcp_gemma._rust_core", frozen)]
pub struct PyBm25Index {
    inner: RwLock<Bm25Index>,
}

#[pymethods]
impl PyBm25Index {
    #[new]
    #[pyo3(signature = (k1 = 1.2, b = 0.75))]
    fn new(k1: f32, b: f32) -> PyResult<Self> {
        Ok(Self {
            inner: RwLock::new(Bm25Index::new(k1, b)?),
        })
    }

    fn add(&self, py: Python<'_>, id: &Bound<'_, PyAny>, text: &str) -> PyResult<()> {
        let id: u64 = arg(id, "id", "an int in [0, 2**64)")?;
        let text = text.to_owned();
        py.detach(|| {
            let tokens = keyword::tokenize(&text);
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
        py.detach(|| {
            // Tokenise outside the lock so readers are not held up.
            let tokens: Vec<Vec<String>> = texts.par_iter().map(|t| keyword::tokenize(t)).collect();
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
    #[allow(clippy::type_complexity)]
    fn search<'py>(
        &self,
        py: Python<'py>,
        query: &str,
        k: i64,
        allow: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<(Bound<'py, PyArray1<u64>>, Bound<'py, PyArray1<f32>>)> {
        let k = check_k(k)?;
        let query = query.to_owned();
        let allow = match allow {
            None => None,
            Some(a) => {
                let arr = readonly::<u64, Ix1>(a, "allow", 1)?;
                Some(slice(&arr, "allow")?.to_vec())
            }
        };
        let hits =
            py.detach(|| read(&self.inner).map(|g| g.search(&query, k, allow.as_deref())))?;
        let (ids, scores): (Vec<u64>, Vec<f32>) = hits.into_iter().unzip();
        Ok((ids.into_pyarray(py), scores.into_pyarray(py)))
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
            "BM25Index(k1={}, b={}, len={}, vocab_size={})",
            g.k1(),
            g.b(),
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
