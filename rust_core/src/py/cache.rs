//! `TtlCache`: str -> bytes. Operations are O(1) and short, so they run with the GIL held; values
//! are kept as the caller's `bytes` objects, so `get` returns them without copying.

use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::cache::TtlCache;
use crate::errors::CoreError;

/// LRU + TTL cache; see `_rust_core.pyi`.
#[pyclass(name = "TtlCache", module = "mcp_gemma._rust_core", frozen)]
pub struct PyTtlCache {
    inner: Mutex<TtlCache<Py<PyBytes>>>,
}

fn ttl(seconds: Option<f64>) -> Result<Option<Duration>, CoreError> {
    match seconds {
        None => Ok(None),
        Some(s) if s.is_finite() && s > 0.0 => Duration::try_from_secs_f64(s)
            .map(Some)
            .map_err(|e| CoreError::invalid(format!("ttl_seconds {s} is out of range: {e}"))),
        Some(s) => Err(CoreError::invalid(format!(
            "ttl_seconds must be > 0 or None, got {s}"
        ))),
    }
}

impl PyTtlCache {
    fn lock(&self) -> Result<MutexGuard<'_, TtlCache<Py<PyBytes>>>, CoreError> {
        self.inner
            .lock()
            .map_err(|_| CoreError::internal("cache lock poisoned by an earlier panic"))
    }
}

#[pymethods]
impl PyTtlCache {
    #[new]
    #[pyo3(signature = (capacity, ttl_seconds = None))]
    fn new(capacity: i64, ttl_seconds: Option<f64>) -> PyResult<Self> {
        let capacity = usize::try_from(capacity)
            .ok()
            .filter(|&c| c >= 1)
            .ok_or_else(|| CoreError::invalid(format!("capacity must be >= 1, got {capacity}")))?;
        Ok(Self {
            inner: Mutex::new(TtlCache::new(capacity, ttl(ttl_seconds)?)),
        })
    }

    fn get(&self, py: Python<'_>, key: &str) -> PyResult<Option<Py<PyBytes>>> {
        Ok(self.lock()?.get(key).map(|v| v.clone_ref(py)))
    }

    #[pyo3(signature = (key, value, ttl_seconds = None))]
    fn set(&self, key: &str, value: Bound<'_, PyBytes>, ttl_seconds: Option<f64>) -> PyResult<()> {
        let ttl = ttl(ttl_seconds)?;
        self.lock()?.set(key, value.unbind(), ttl);
        Ok(())
    }

    fn delete(&self, key: &str) -> PyResult<bool> {
        Ok(self.lock()?.delete(key))
    }

    fn clear(&self) -> PyResult<()> {
        self.lock()?.clear();
        Ok(())
    }

    fn keys(&self) -> PyResult<Vec<String>> {
        Ok(self.lock()?.keys_at(Instant::now()))
    }

    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.lock()?.stats();
        let d = PyDict::new(py);
        d.set_item("hits", s.hits)?;
        d.set_item("misses", s.misses)?;
        d.set_item("evictions", s.evictions)?;
        d.set_item("inserts", s.inserts)?;
        d.set_item("expirations", s.expirations)?;
        Ok(d)
    }

    fn __len__(&self) -> PyResult<usize> {
        Ok(self.lock()?.len_at(Instant::now()))
    }

    fn __contains__(&self, key: &str) -> PyResult<bool> {
        Ok(self.lock()?.contains_at(key, Instant::now()))
    }

    #[getter]
    fn capacity(&self) -> PyResult<usize> {
        Ok(self.lock()?.capacity())
    }
}
