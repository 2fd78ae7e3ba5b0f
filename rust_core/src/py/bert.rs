//! The BERT layer kernels of the numpy sentence embedder (see `crate::bert`), in place on numpy rows.

use numpy::ndarray::{Ix1, Ix2};
use numpy::{PyArray2, PyArrayMethods, PyUntypedArrayMethods};
use pyo3::prelude::*;

use super::arg;
use super::arrays::{readonly, slice};
use crate::bert::{self, HeadShape, NormParams};
use crate::errors::CoreError;

/// A writable, C-contiguous 2-d float32 view of `obj` (checked like [`readonly`]).
fn rows_mut<'py>(
    obj: &Bound<'py, PyAny>,
    name: &str,
) -> PyResult<numpy::PyReadwriteArray<'py, f32, Ix2>> {
    readonly::<f32, Ix2>(obj, name, 2)?; // dtype, dimensions and layout, with its messages
    let arr = obj
        .cast::<PyArray2<f32>>()
        .map_err(|_| CoreError::invalid(format!("{name} must be a 2-d array of float32")))?;
    arr.try_readwrite().map_err(|e| {
        CoreError::invalid(format!(
            "{name} must be writable and not in use elsewhere ({e})"
        ))
        .into()
    })
}

/// `x = gelu(x + bias)` in place (exact erf GELU), `x` 2-d float32 with `len(bias)` columns.
#[pyfunction]
pub fn bias_gelu(py: Python<'_>, x: &Bound<'_, PyAny>, bias: &Bound<'_, PyAny>) -> PyResult<()> {
    let ba = readonly::<f32, Ix1>(bias, "bias", 1)?;
    let mut xa = rows_mut(x, "x")?;
    if xa.shape()[1] != ba.len() {
        return Err(CoreError::invalid(format!(
            "x has {} columns but bias has {} values",
            xa.shape()[1],
            ba.len()
        ))
        .into());
    }
    let bs = slice(&ba, "bias")?;
    let xs = xa
        .as_slice_mut()
        .map_err(|_| CoreError::invalid("x must be C-contiguous"))?;
    py.detach(|| bert::bias_gelu(xs, bs))?;
    Ok(())
}

/// `x = layer_norm(x + bias + residual) * weight + shift` in place, row by row.
#[pyfunction]
#[allow(clippy::too_many_arguments)]
pub fn add_layer_norm(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    bias: &Bound<'_, PyAny>,
    residual: &Bound<'_, PyAny>,
    weight: &Bound<'_, PyAny>,
    shift: &Bound<'_, PyAny>,
    eps: f32,
) -> PyResult<()> {
    let ba = readonly::<f32, Ix1>(bias, "bias", 1)?;
    let wa = readonly::<f32, Ix1>(weight, "weight", 1)?;
    let sa = readonly::<f32, Ix1>(shift, "shift", 1)?;
    let ra = readonly::<f32, Ix2>(residual, "residual", 2)?;
    let mut xa = rows_mut(x, "x")?;
    if xa.shape() != ra.shape() || xa.shape()[1] != ba.len() {
        return Err(CoreError::invalid(format!(
            "x {:?} and residual {:?} must have one shape with {} columns (len(bias))",
            xa.shape(),
            ra.shape(),
            ba.len()
        ))
        .into());
    }
    let p = NormParams {
        bias: slice(&ba, "bias")?,
        weight: slice(&wa, "weight")?,
        shift: slice(&sa, "shift")?,
        eps,
    };
    let rs = slice(&ra, "residual")?;
    let xs = xa
        .as_slice_mut()
        .map_err(|_| CoreError::invalid("x must be C-contiguous"))?;
    py.detach(|| bert::add_layer_norm(xs, rs, p))?;
    Ok(())
}

/// Multi-head self-attention of packed texts (see `crate::bert::attention`): `qkv` (tokens,
/// 3·hidden), `lengths` the texts' row counts in order; returns (tokens, hidden).
#[pyfunction]
pub fn bert_attention<'py>(
    py: Python<'py>,
    qkv: &Bound<'py, PyAny>,
    lengths: &Bound<'py, PyAny>,
    heads: usize,
) -> PyResult<Bound<'py, PyArray2<f32>>> {
    let lengths: Vec<usize> = arg(lengths, "lengths", "a sequence of non-negative ints")?;
    let qa = readonly::<f32, Ix2>(qkv, "qkv", 2)?;
    let (tokens, width) = (qa.shape()[0], qa.shape()[1]);
    if heads == 0 || width % (3 * heads) != 0 {
        return Err(CoreError::invalid(format!(
            "qkv has {width} columns, not 3 · hidden with hidden a multiple of heads = {heads}"
        ))
        .into());
    }
    let hidden = width / 3;
    let shape = HeadShape {
        heads,
        head_dim: hidden / heads,
    };
    let qs = slice(&qa, "qkv")?;
    let out = PyArray2::<f32>::zeros(py, [tokens, hidden], false);
    {
        let mut oa = out
            .try_readwrite()
            .map_err(|e| CoreError::internal(format!("{e}")))?;
        let os = oa
            .as_slice_mut()
            .map_err(|_| CoreError::internal("new array not contiguous"))?;
        py.detach(|| bert::attention(qs, &lengths, shape, os))?;
    }
    Ok(out)
}
