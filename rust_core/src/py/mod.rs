//! PyO3 wrappers: convert and check arguments at the edge, call a pure kernel (inside `py.detach` when
//! it scans), convert the result. No logic lives here.
#![deny(clippy::unwrap_used)]

pub mod ann;
pub mod bert;
pub mod bpe;
pub mod cache;
pub mod chunk;
pub mod f16mat;
pub mod fusion;
pub mod keyword;
pub mod q8;
pub mod vector;

mod arrays;

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use pyo3::conversion::FromPyObjectOwned;
use pyo3::prelude::*;

use crate::errors::CoreError;

/// Extracts a Python value as `T`, turning a failed conversion (wrong type, negative or too large
/// id) into a `ValueError` that names the argument, instead of a `TypeError` / `OverflowError`.
pub(crate) fn arg<'py, T: FromPyObjectOwned<'py>>(
    obj: &Bound<'py, PyAny>,
    name: &str,
    expected: &str,
) -> PyResult<T> {
    obj.extract::<T>().map_err(|e| {
        let got = obj
            .repr()
            .map_or_else(|_| "?".to_owned(), |r| r.to_string());
        let got: String = got.chars().take(80).collect();
        let e: PyErr = e.into();
        CoreError::invalid(format!("{name} must be {expected}, got {got} ({e})")).into()
    })
}

/// Read-locks, turning a poisoned lock (a panic in another thread) into an internal error.
pub(crate) fn read<T>(lock: &RwLock<T>) -> Result<RwLockReadGuard<'_, T>, CoreError> {
    lock.read()
        .map_err(|_| CoreError::internal("index lock poisoned by an earlier panic"))
}

/// Write-locks, turning a poisoned lock into an internal error.
pub(crate) fn write<T>(lock: &RwLock<T>) -> Result<RwLockWriteGuard<'_, T>, CoreError> {
    lock.write()
        .map_err(|_| CoreError::internal("index lock poisoned by an earlier panic"))
}
