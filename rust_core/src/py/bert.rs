//! The BERT layer kernels of the numpy sentence embedder (see `crate::bert`), in place on numpy rows.

use pyo3::prelude::*;

use super::arg;
use super::arrays::{readonly, writable, NewArray};
use crate::bert::{self, HeadShape, NormParams};
use crate::errors::CoreError;

/// `x = gelu(x + bias)` in place (exact erf GELU), `x` 2-d float32 with `len(bias)` columns.
#[pyfunction]
pub fn bias_gelu(py: Python<'_>, x: &Bound<'_, PyAny>, bias: &Bound<'_, PyAny>) -> PyResult<()> {
    let ba = readonly::<f32>(bias, "bias", 1)?;
    let mut xa = writable::<f32>(x, "x", 2)?;
    if xa.shape()[1] != ba.len() {
        return Err(CoreError::invalid(format!(
            "x has {} columns but bias has {} values",
            xa.shape()[1],
            ba.len()
        ))
        .into());
    }
    let bs = ba.as_slice();
    let xs = xa.as_mut_slice();
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
    let ba = readonly::<f32>(bias, "bias", 1)?;
    let wa = readonly::<f32>(weight, "weight", 1)?;
    let sa = readonly::<f32>(shift, "shift", 1)?;
    let ra = readonly::<f32>(residual, "residual", 2)?;
    let mut xa = writable::<f32>(x, "x", 2)?;
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
        bias: ba.as_slice(),
        weight: wa.as_slice(),
        shift: sa.as_slice(),
        eps,
    };
    let rs = ra.as_slice();
    let xs = xa.as_mut_slice();
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
) -> PyResult<Bound<'py, PyAny>> {
    let lengths: Vec<usize> = arg(lengths, "lengths", "a sequence of non-negative ints")?;
    let qa = readonly::<f32>(qkv, "qkv", 2)?;
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
    let qs = qa.as_slice();
    let mut out = NewArray::<f32>::new(py, &[tokens, hidden], true)?;
    let os = out.as_mut_slice();
    py.detach(|| bert::attention(qs, &lengths, shape, os))?;
    Ok(out.finish())
}
