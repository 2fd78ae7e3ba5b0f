//! PyO3 wrappers: convert and check arguments at the edge, call a pure kernel (inside `py.detach` when
//! it scans), convert the result. No logic lives here.
#![deny(clippy::unwrap_used)]

pub mod cache;
pub mod chunk;
pub mod fusion;
pub mod keyword;
pub mod vector;

mod arrays;

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::errors::CoreError;

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
