//! `F16Matrix`: binary16 weights with f32 products, for the embedder's short inputs (see `crate::f16mat`).

use pyo3::prelude::*;

use super::arrays::{input_rows, readonly, NewArray};
use crate::f16mat::F16Matrix;
use crate::pool;

/// Immutable binary16 matrix; see `_rust_core.pyi`.
#[pyclass(name = "F16Matrix", module = "mcp_gemma._rust_core", frozen)]
pub struct PyF16Matrix {
    inner: F16Matrix,
}

#[pymethods]
impl PyF16Matrix {
    #[staticmethod]
    fn from_bits(bits: &Bound<'_, PyAny>) -> PyResult<Self> {
        let b = readonly::<u16>(bits, "bits", 2)?;
        let (rows, cols) = (b.shape()[0], b.shape()[1]);
        let inner = F16Matrix::from_bits(b.as_slice().to_vec(), rows, cols)?;
        Ok(Self { inner })
    }

    #[pyo3(signature = (x, threads=None))]
    fn matmul<'py>(
        &self,
        py: Python<'py>,
        x: &Bound<'py, PyAny>,
        threads: Option<usize>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (xa, m) = input_rows(x, self.inner.cols())?;
        let xs = xa.as_slice();
        let rows = self.inner.rows();
        let mut out = NewArray::<f32>::new(py, &[m, rows], true)?;
        let os = out.as_mut_slice();
        if threads == Some(1) {
            // one thread: this one, without a hand-off to a pool
            py.detach(|| self.inner.matmul(xs, m, os, false))?;
        } else {
            py.detach(|| pool::run_in(threads, || self.inner.matmul(xs, m, os, true)))??;
        }
        Ok(out.finish())
    }

    #[getter]
    fn shape(&self) -> (usize, usize) {
        (self.inner.rows(), self.inner.cols())
    }

    #[getter]
    fn nbytes(&self) -> usize {
        self.inner.nbytes()
    }

    fn __repr__(&self) -> String {
        format!(
            "F16Matrix(shape=({}, {}), nbytes={})",
            self.inner.rows(),
            self.inner.cols(),
            self.inner.nbytes()
        )
    }
}
