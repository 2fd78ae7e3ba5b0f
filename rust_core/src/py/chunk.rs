//! `chunk_text`.

use pyo3::prelude::*;

use crate::chunk::{self, ChunkMode};
use crate::errors::CoreError;

/// [start, end) str offsets of chunks of at most `max_chars` code points.
#[pyfunction]
#[pyo3(signature = (text, max_chars, overlap = 0, mode = "sentence"))]
pub fn chunk_text(
    py: Python<'_>,
    text: &str,
    max_chars: i64,
    overlap: i64,
    mode: &str,
) -> PyResult<Vec<(usize, usize)>> {
    let mode = ChunkMode::parse(mode)?;
    let max_chars = usize::try_from(max_chars)
        .ok()
        .filter(|&m| m >= 1)
        .ok_or_else(|| CoreError::invalid(format!("max_chars must be >= 1, got {max_chars}")))?;
    let overlap = usize::try_from(overlap)
        .map_err(|_| CoreError::invalid(format!("overlap must be >= 0, got {overlap}")))?;
    let text = text.to_owned();
    Ok(py.detach(|| chunk::chunk_text(&text, max_chars, overlap, mode))?)
}
