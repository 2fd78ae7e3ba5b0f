//! Checked views of numpy arguments, with messages that say what to do.

use numpy::ndarray::{Dimension, Ix1, Ix2};
use numpy::{
    dtype, Element, PyArray, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::types::PyBytes;

use crate::errors::CoreError;

/// A read-only, C-contiguous view of a numpy array with element type `T` and `ndim` dimensions.
pub fn readonly<'py, T: Element, D: Dimension>(
    obj: &Bound<'py, PyAny>,
    name: &str,
    ndim: usize,
) -> PyResult<PyReadonlyArray<'py, T, D>> {
    let py = obj.py();
    let type_name = std::any::type_name::<T>();
    let untyped = obj.cast::<PyUntypedArray>().map_err(|_| {
        CoreError::invalid(format!(
            "{name} must be a numpy.ndarray of {type_name}, got {}",
            type_label(obj)
        ))
    })?;
    if untyped.ndim() != ndim {
        return Err(CoreError::invalid(format!(
            "{name} must be {ndim}-dimensional, got shape {:?}",
            untyped.shape()
        ))
        .into());
    }
    if !untyped.dtype().is_equiv_to(&dtype::<T>(py)) {
        return Err(CoreError::invalid(format!(
            "{name} must have dtype {}, got {}; convert with .astype(np.{})",
            numpy_name::<T>(),
            untyped.dtype(),
            numpy_name::<T>()
        ))
        .into());
    }
    if !untyped.is_c_contiguous() {
        return Err(CoreError::invalid(format!(
            "{name} must be C-contiguous; pass np.ascontiguousarray({name})"
        ))
        .into());
    }
    let typed = obj.cast::<PyArray<T, D>>().map_err(|_| {
        CoreError::invalid(format!(
            "{name} must be a {ndim}-d array of {}",
            numpy_name::<T>()
        ))
    })?;
    typed
        .try_readonly()
        .map_err(|e| CoreError::invalid(format!("{name} is being written elsewhere ({e})")).into())
}

/// Contiguous slice of a checked view (cannot fail after [`readonly`]).
pub fn slice<'a, T: Element, D: Dimension>(
    arr: &'a PyReadonlyArray<'_, T, D>,
    name: &str,
) -> PyResult<&'a [T]> {
    arr.as_slice()
        .map_err(|_| CoreError::invalid(format!("{name} must be C-contiguous")).into())
}

/// The input rows `x` of a product with a `cols`-column weight matrix: a checked 2-d float32 view
/// and its row count.
pub fn input_rows<'py>(
    x: &Bound<'py, PyAny>,
    cols: usize,
) -> PyResult<(PyReadonlyArray<'py, f32, Ix2>, usize)> {
    let xa = readonly::<f32, Ix2>(x, "x", 2)?;
    let (m, got) = (xa.shape()[0], xa.shape()[1]);
    if got != cols {
        return Err(
            CoreError::invalid(format!("x has {got} columns but the matrix has {cols}")).into(),
        );
    }
    Ok((xa, m))
}

/// Owned copies of `ids` (uint64, 1-d) and `vectors` (float32, `ids.len() × dim`): the upsert
/// arguments of the index classes, checked before any lock is taken.
pub fn ids_and_rows(
    ids: &Bound<'_, PyAny>,
    vectors: &Bound<'_, PyAny>,
    dim: usize,
) -> PyResult<(Vec<u64>, Vec<f32>)> {
    let ids_arr = readonly::<u64, Ix1>(ids, "ids", 1)?;
    let vec_arr = readonly::<f32, Ix2>(vectors, "vectors", 2)?;
    if vec_arr.shape()[1] != dim || vec_arr.shape()[0] != ids_arr.len() {
        return Err(CoreError::invalid(format!(
            "vectors must have shape ({}, {dim}) to match ids, got {:?}",
            ids_arr.len(),
            vec_arr.shape()
        ))
        .into());
    }
    Ok((
        slice(&ids_arr, "ids")?.to_vec(),
        slice(&vec_arr, "vectors")?.to_vec(),
    ))
}

/// An owned copy of a 1-d uint64 id array.
pub fn id_list(ids: &Bound<'_, PyAny>) -> PyResult<Vec<u64>> {
    let ids_arr = readonly::<u64, Ix1>(ids, "ids", 1)?;
    Ok(slice(&ids_arr, "ids")?.to_vec())
}

/// An owned copy of a 1-d float32 query vector.
pub fn query_row(query: &Bound<'_, PyAny>) -> PyResult<Vec<f32>> {
    let q_arr = readonly::<f32, Ix1>(query, "query", 1)?;
    Ok(slice(&q_arr, "query")?.to_vec())
}

fn numpy_name<T>() -> &'static str {
    match std::any::type_name::<T>() {
        "f32" => "float32",
        "u64" => "uint64",
        "i64" => "int64",
        "i8" => "int8",
        "u16" => "uint16",
        other => other,
    }
}

fn type_label(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "an unknown type".to_owned(), |n| n.to_string())
}

/// `data[start:stop]` of a `bytes` object, held without a copy and usable without the GIL (the
/// saved-index loaders read a section of a larger file this way).
pub fn byte_section(
    data: &Bound<'_, PyAny>,
    start: i64,
    stop: Option<i64>,
) -> PyResult<(PyBackedBytes, std::ops::Range<usize>)> {
    let bytes = data
        .cast::<PyBytes>()
        .map_err(|_| CoreError::invalid(format!("data must be bytes, got {}", type_label(data))))?;
    let len = bytes.as_bytes().len();
    let stop = stop.unwrap_or(len as i64);
    let (Ok(a), Ok(b)) = (usize::try_from(start), usize::try_from(stop)) else {
        return Err(CoreError::invalid(format!(
            "start and stop must be >= 0, got {start}, {stop}"
        ))
        .into());
    };
    if a > b || b > len {
        return Err(CoreError::invalid(format!(
            "section [{a}, {b}) is not within the {len} bytes given"
        ))
        .into());
    }
    Ok((PyBackedBytes::from(bytes.clone()), a..b))
}

/// `decode(data[start..stop])` with the GIL released: the `from_bytes` of every saved index, which
/// reads its section of one large `bytes` object in place.
pub fn decode_section<T: Send>(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    start: i64,
    stop: Option<i64>,
    decode: impl FnOnce(&[u8]) -> Result<T, CoreError> + Send,
) -> PyResult<T> {
    let (data, range) = byte_section(data, start, stop)?;
    Ok(py.detach(|| decode(&data[range]))?)
}
