//! `Q8Matrix`: block-quantised int8 weights for the Gemma decoder (see `crate::q8`).

use pyo3::prelude::*;

use super::arrays::{array_from, input_rows, readonly, NewArray};
use crate::errors::CoreError;
use crate::pool;
use crate::q8::{self, attention, layer, Q8Matrix};

/// The kernels the int8 products of several rows run with here: "avx512_vnni", "avx2" or "portable".
#[pyfunction]
pub fn q8_kernel_level() -> &'static str {
    q8::q8_level().name()
}

/// Immutable int8 matrix with one f32 scale per 32 columns; see `_rust_core.pyi`.
#[pyclass(name = "Q8Matrix", module = "mcp_gemma._rust_core", frozen)]
pub struct PyQ8Matrix {
    inner: Q8Matrix,
}

#[pymethods]
impl PyQ8Matrix {
    #[staticmethod]
    fn quantize(py: Python<'_>, weights: &Bound<'_, PyAny>) -> PyResult<Self> {
        let w = readonly::<f32>(weights, "weights", 2)?;
        let (rows, cols) = (w.shape()[0], w.shape()[1]);
        let data = w.as_slice();
        let inner = py.detach(|| Q8Matrix::quantize(data, rows, cols))?;
        Ok(Self { inner })
    }

    #[staticmethod]
    fn from_parts(codes: &Bound<'_, PyAny>, scales: &Bound<'_, PyAny>) -> PyResult<Self> {
        let c = readonly::<i8>(codes, "codes", 2)?;
        let s = readonly::<f32>(scales, "scales", 2)?;
        let (rows, cols) = (c.shape()[0], c.shape()[1]);
        if s.shape()[0] != rows || s.shape()[1] * q8::BLOCK != cols {
            return Err(CoreError::invalid(format!(
                "scales must have shape ({rows}, {}), got {:?}",
                cols / q8::BLOCK,
                s.shape()
            ))
            .into());
        }
        let inner = Q8Matrix::from_parts(c.as_slice().to_vec(), s.as_slice().to_vec(), rows, cols)?;
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
        // Every element is written (each (input, row) by exactly one task): no zeroing pass.
        let mut out = NewArray::<f32>::new(py, &[m, rows], false)?;
        let os = out.as_mut_slice();
        py.detach(|| pool::run_in(threads, || self.inner.matmul(xs, m, os)))??;
        Ok(out.finish())
    }

    fn gather<'py>(&self, py: Python<'py>, ids: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
        let ia = readonly::<i64>(ids, "ids", 1)?;
        let ids: Vec<usize> = ia
            .as_slice()
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .map_err(|_| CoreError::invalid(format!("row {i} is out of range")))
            })
            .collect::<Result<_, _>>()?;
        let cols = self.inner.cols();
        let mut out = NewArray::<f32>::new(py, &[ids.len(), cols], true)?;
        self.inner.gather(&ids, out.as_mut_slice())?;
        Ok(out.finish())
    }

    fn codes<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        array_from(
            py,
            self.inner.codes(),
            &[self.inner.rows(), self.inner.cols()],
        )
    }

    fn scales<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let shape = [self.inner.rows(), self.inner.cols() / q8::BLOCK];
        let mut out = NewArray::<f32>::new(py, &shape, false)?;
        self.inner.scales_into(out.as_mut_slice())?;
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
            "Q8Matrix(shape=({}, {}), nbytes={})",
            self.inner.rows(),
            self.inner.cols(),
            self.inner.nbytes()
        )
    }
}

/// `x @ vstack(mats).T` for 2-d `x`: the product with matrices of one column count stacked by rows
/// (a tall matrix held in blocks), in one pass over the pool of `threads` (rayon's global one for
/// None) and one output array; each row's value is its own matrix's `matmul`'s, bit for bit.
#[pyfunction]
#[pyo3(signature = (mats, x, threads=None))]
pub fn q8_matmul_stacked<'py>(
    py: Python<'py>,
    mats: Vec<Bound<'py, PyQ8Matrix>>,
    x: &Bound<'py, PyAny>,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let inner: Vec<&Q8Matrix> = mats.iter().map(|w| &w.get().inner).collect();
    // The stacking rules (at least one matrix, one column count, x's width) are the core's.
    let xa = readonly::<f32>(x, "x", 2)?;
    let (m, xs) = (xa.shape()[0], xa.as_slice());
    let rows: usize = inner.iter().map(|w| w.rows()).sum();
    let mut out = NewArray::<f32>::new(py, &[m, rows], false)?; // every element is written
    let os = out.as_mut_slice();
    py.detach(|| pool::run_in(threads, || q8::matmul_stacked(&inner, xs, m, os)))??;
    Ok(out.finish())
}

/// Refuses two arrays (named `a_name` and `b_name`) whose shapes differ.
fn same_shape(a_name: &str, a: &[usize], b_name: &str, b: &[usize]) -> PyResult<()> {
    if a == b {
        return Ok(());
    }
    Err(CoreError::invalid(format!(
        "{a_name} and {b_name} must have one shape, got {a:?} and {b:?}"
    ))
    .into())
}

/// `x / sqrt(mean(x², axis=-1) + eps) * scale` for 2-d `x` (numpy's arithmetic, same bits), rows
/// split across the pool of `threads` (rayon's global one for None) when there are enough.
#[pyfunction]
#[pyo3(signature = (x, scale, eps, threads=None))]
pub fn rms_norm<'py>(
    py: Python<'py>,
    x: &Bound<'py, PyAny>,
    scale: &Bound<'py, PyAny>,
    eps: f32,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let sa = readonly::<f32>(scale, "scale", 1)?;
    let (xa, n) = input_rows(x, sa.len())?;
    let (xs, ss) = (xa.as_slice(), sa.as_slice());
    let mut out = NewArray::<f32>::new(py, &[n, ss.len()], false)?; // every row is written
    let os = out.as_mut_slice();
    py.detach(|| layer::rms_norm(xs, ss, eps, os, threads))?;
    Ok(out.finish())
}

/// `h + rms_norm(y, scale, eps)` for 2-d `h` and `y` of one shape (a new array), rows split
/// across the pool of `threads` as for [`rms_norm`].
#[pyfunction]
#[pyo3(signature = (h, y, scale, eps, threads=None))]
pub fn add_rms_norm<'py>(
    py: Python<'py>,
    h: &Bound<'py, PyAny>,
    y: &Bound<'py, PyAny>,
    scale: &Bound<'py, PyAny>,
    eps: f32,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let sa = readonly::<f32>(scale, "scale", 1)?;
    let dim = sa.len();
    let (ya, n) = input_rows(y, dim)?;
    let ha = readonly::<f32>(h, "h", 2)?;
    same_shape("h", ha.shape(), "y", ya.shape())?;
    let (ys, ss) = (ya.as_slice(), sa.as_slice());
    let mut out = NewArray::<f32>::new(py, &[n, dim], false)?;
    let os = out.as_mut_slice();
    os.copy_from_slice(ha.as_slice());
    py.detach(|| layer::add_rms_norm(os, ys, ss, eps, threads))?;
    Ok(out.finish())
}

/// The q and k heads of the fused projection `qkv` (n, ≥ heads · head_dim), each RMS-normed with
/// its row of `scale` (heads, head_dim) and rotated by `cos`/`sin` (n, head_dim): (heads, n, head_dim),
/// split across the pool of `threads` as for [`rms_norm`].
#[pyfunction]
#[pyo3(signature = (qkv, scale, cos, sin, eps, threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn qk_norm_rope<'py>(
    py: Python<'py>,
    qkv: &Bound<'py, PyAny>,
    scale: &Bound<'py, PyAny>,
    cos: &Bound<'py, PyAny>,
    sin: &Bound<'py, PyAny>,
    eps: f32,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let qa = readonly::<f32>(qkv, "qkv", 2)?;
    let sa = readonly::<f32>(scale, "scale", 2)?;
    let ca = readonly::<f32>(cos, "cos", 2)?;
    let na = readonly::<f32>(sin, "sin", 2)?;
    let (n, heads, head_dim) = (qa.shape()[0], sa.shape()[0], sa.shape()[1]);
    if ca.shape() != [n, head_dim] || na.shape() != [n, head_dim] {
        return Err(CoreError::invalid(format!(
            "cos and sin must have shape ({n}, {head_dim}), got {:?} and {:?}",
            ca.shape(),
            na.shape()
        ))
        .into());
    }
    let shape = layer::QkShape { n, heads, head_dim };
    let (qs, ss) = (qa.as_slice(), sa.as_slice());
    let (cs, ns) = (ca.as_slice(), na.as_slice());
    let mut out = NewArray::<f32>::new(py, &[heads, n, head_dim], false)?; // every row is written
    let os = out.as_mut_slice();
    py.detach(|| layer::qk_norm_rope(qs, shape, ss, cs, ns, eps, os, threads))?;
    Ok(out.finish())
}

/// `gelu(gate) · up` (gelu's tanh form) for the rows of a fused `gate | up` projection
/// (n, 2 · half): (n, half), rows split across the pool of `threads` (rayon's global one for None).
#[pyfunction]
#[pyo3(signature = (gate_up, threads=None))]
pub fn gelu_times<'py>(
    py: Python<'py>,
    gate_up: &Bound<'py, PyAny>,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let ga = readonly::<f32>(gate_up, "gate_up", 2)?;
    let (n, width) = (ga.shape()[0], ga.shape()[1]);
    if width == 0 || width % 2 != 0 {
        return Err(CoreError::invalid(format!(
            "gate_up rows must hold an even, positive number of values, got {width}"
        ))
        .into());
    }
    let gs = ga.as_slice();
    let mut out = NewArray::<f32>::new(py, &[n, width / 2], false)?;
    let os = out.as_mut_slice();
    py.detach(|| layer::gelu_times(gs, width / 2, os, threads))?;
    Ok(out.finish())
}

/// Causal grouped-query attention of the query rows `q` (heads, n, head_dim) at positions
/// `start..start + n` against the key and value caches (kv_heads, capacity, head_dim), each query
/// seeing the last `window` keys up to itself (all for None), scores scaled by `scale`:
/// (n, heads · head_dim). Query-row blocks split across the pool of `threads` when large enough.
#[pyfunction]
#[pyo3(signature = (q, keys, values, start, window, scale, threads=None))]
#[allow(clippy::too_many_arguments)]
pub fn gqa_attention<'py>(
    py: Python<'py>,
    q: &Bound<'py, PyAny>,
    keys: &Bound<'py, PyAny>,
    values: &Bound<'py, PyAny>,
    start: i64,
    window: Option<i64>,
    scale: f32,
    threads: Option<usize>,
) -> PyResult<Bound<'py, PyAny>> {
    let start = usize::try_from(start)
        .map_err(|_| CoreError::invalid(format!("start must be >= 0, got {start}")))?;
    let window = window
        .map(|w| {
            usize::try_from(w)
                .map_err(|_| CoreError::invalid(format!("window must be positive, got {w}")))
        })
        .transpose()?;
    let qa = readonly::<f32>(q, "q", 3)?;
    let ka = readonly::<f32>(keys, "keys", 3)?;
    let va = readonly::<f32>(values, "values", 3)?;
    same_shape("keys", ka.shape(), "values", va.shape())?;
    let (heads, n, head_dim) = (qa.shape()[0], qa.shape()[1], qa.shape()[2]);
    if ka.shape()[2] != head_dim {
        return Err(CoreError::invalid(format!(
            "q has head_dim {head_dim} but keys have {}",
            ka.shape()[2]
        ))
        .into());
    }
    let shape = attention::AttentionShape {
        heads,
        kv_heads: ka.shape()[0],
        head_dim,
        n,
        capacity: ka.shape()[1],
        start,
        window,
    };
    shape.check()?;
    let (qs, ks, vs) = (qa.as_slice(), ka.as_slice(), va.as_slice());
    let mut out = NewArray::<f32>::new(py, &[n, heads * head_dim], false)?;
    let os = out.as_mut_slice();
    let mut run = move || attention::attention(qs, ks, vs, shape, scale, os);
    py.detach(|| {
        if shape.parallel() {
            pool::run_in(threads, run)
        } else {
            // a decode step: the pool hand-off would cost more than the work
            if let Some(t) = threads {
                pool::pool_for(t)?;
            }
            Ok(run())
        }
    })??;
    Ok(out.finish())
}
