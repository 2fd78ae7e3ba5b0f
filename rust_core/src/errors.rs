//! The one error type of the crate, and its mapping to Python exceptions (the only place that does it).

use std::fmt;

/// Everything that can go wrong in the kernels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CoreError {
    /// The caller passed something unusable (wrong shape, k = 0, NaN, bad parameter).
    InvalidInput(String),
    /// A bug or a broken invariant on our side (poisoned lock, inconsistent index).
    Internal(String),
}

impl CoreError {
    /// Shorthand for [`CoreError::InvalidInput`].
    pub fn invalid(msg: impl Into<String>) -> Self {
        Self::InvalidInput(msg.into())
    }

    /// Shorthand for [`CoreError::Internal`].
    pub fn internal(msg: impl Into<String>) -> Self {
        Self::Internal(msg.into())
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::InvalidInput(msg) => f.write_str(msg),
            Self::Internal(msg) => write!(f, "internal error in mcp_gemma._rust_core: {msg}"),
        }
    }
}

impl std::error::Error for CoreError {}

/// Result alias used by every kernel.
pub type CoreResult<T> = Result<T, CoreError>;

#[cfg(feature = "python")]
mod python {
    use super::CoreError;
    use pyo3::exceptions::{PyException, PyValueError};
    use pyo3::PyErr;

    pyo3::create_exception!(
        _rust_core,
        RustCoreError,
        PyException,
        "An internal failure of the Rust core (a bug, not bad input)."
    );

    impl From<CoreError> for PyErr {
        fn from(err: CoreError) -> PyErr {
            match err {
                CoreError::InvalidInput(msg) => PyValueError::new_err(msg),
                err @ CoreError::Internal(_) => RustCoreError::new_err(err.to_string()),
            }
        }
    }
}

#[cfg(feature = "python")]
pub use python::RustCoreError;

/// Rows in `len` values of rows of `dim` (`what` names the input in the error).
pub fn whole_rows(len: usize, dim: usize, what: &str) -> CoreResult<usize> {
    if dim == 0 || len % dim != 0 {
        return Err(CoreError::invalid(format!(
            "{what} has {len} values, not a whole number of rows of {dim}"
        )));
    }
    Ok(len / dim)
}
