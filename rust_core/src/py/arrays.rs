//! Checked views of numpy arguments, with messages that say what to do.

use numpy::ndarray::Dimension;
use numpy::{
    dtype, Element, PyArray, PyArrayDescrMethods, PyArrayMethods, PyReadonlyArray, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::prelude::*;

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

fn numpy_name<T>() -> &'static str {
    match std::any::type_name::<T>() {
        "f32" => "float32",
        "u64" => "uint64",
        "i64" => "int64",
        "i8" => "int8",
        other => other,
    }
}

fn type_label(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "an unknown type".to_owned(), |n| n.to_string())
}
