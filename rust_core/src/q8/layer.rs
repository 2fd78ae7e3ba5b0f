//! The element-wise parts of a Gemma 3 layer around the int8 products, fused: RMS norms (alone
//! and added to the residual stream), the q/k head norms with the rotary embedding, and the MLP's
//! gelu-times-up.
//!
//! Why: in a decode step these are ~100 small numpy calls per token (a few µs each), a sixth of
//! the step once the products are memory-bound. Each kernel here does numpy's arithmetic in
//! numpy's order — the sum of squares is numpy's pairwise sum, then `/ n`, `+ eps`, `sqrt`,
//! `x / r * scale`, and the rotation `x · cos + swap(x) · sin` without fused multiply-adds — so
//! the results are bit-for-bit those of the numpy code they replace, and greedy answers keep.
//! The exception is [`gelu_times`] (the MLP's activation): numpy's `tanh` is its own SIMD
//! approximation, so this one is accurate to a few ulp instead of equal (its doc says why).

use rayon::prelude::*;

use crate::errors::{whole_rows, CoreError, CoreResult};

/// numpy's pairwise summation of `a` (`pairwise_sum` in its `loops_utils.h`): eight running sums
/// over blocks of at most 128 values, halves split on multiples of eight above that.
pub fn pairwise_sum(a: &[f32]) -> f32 {
    pairwise(a, &block_sum)
}

/// numpy's split of a pairwise sum: `block` sums each run of at most 128 values (eight running
/// sums, then the tail, see [`block_sum`]), the halves above that are split on multiples of eight.
/// One place for the order every kernel that must give numpy's bits follows.
pub(super) fn pairwise(a: &[f32], block: &impl Fn(&[f32]) -> f32) -> f32 {
    let n = a.len();
    if n <= 128 {
        return block(a);
    }
    let mut half = n / 2;
    half -= half % 8;
    pairwise(&a[..half], block) + pairwise(&a[half..], block)
}

/// numpy's sum of at most 128 values: below eight a plain fold from -0.0; else eight running sums
/// over the whole groups of eight, combined `((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))`, then
/// the tail added one by one.
fn block_sum(a: &[f32]) -> f32 {
    let n = a.len();
    if n < 8 {
        return a.iter().fold(-0.0f32, |r, &v| r + v);
    }
    let mut r: [f32; 8] = std::array::from_fn(|j| a[j]);
    let whole = n - n % 8;
    let mut i = 8;
    while i < whole {
        for (j, rj) in r.iter_mut().enumerate() {
            *rj += a[i + j];
        }
        i += 8;
    }
    let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for &v in &a[whole..] {
        res += v;
    }
    res
}

/// `1 / sqrt(mean(x²) + eps)`'s denominator, `sqrt(mean(x²) + eps)`, as numpy computes it in f32
/// (`np.mean(np.square(x))`: the identity 0 plus the pairwise sum, divided by the count). With
/// `avx2`, the squares are summed eight lanes at a time in the same order (the same bits) and
/// `squares` is not touched.
fn rms_root(x: &[f32], squares: &mut [f32], eps: f32, avx2: bool) -> f32 {
    let sum = sum_squares(x, squares, avx2);
    let mean = (0.0f32 + sum) / x.len() as f32;
    (mean + eps).sqrt()
}

/// numpy's pairwise sum of the squares of `x` (see [`rms_root`]).
fn sum_squares(x: &[f32], squares: &mut [f32], avx2: bool) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: the caller detected AVX2 (see [`avx2_rows`]); each block is at most 128 values.
        return pairwise(x, &|b| unsafe { super::avx2::block_sum_squares(b) });
    }
    let _ = avx2;
    for (s, &v) in squares.iter_mut().zip(x) {
        *s = v * v;
    }
    pairwise_sum(squares)
}

/// Whether the row kernels run their AVX2 forms (the same bits as the portable ones): where the
/// CPU has AVX2 and FMA and `MCP_GEMMA_FORCE_SCALAR` is not set.
fn avx2_rows() -> bool {
    cfg!(target_arch = "x86_64")
        && crate::vector::simd::simd_level() == crate::vector::simd::SimdLevel::Avx2
}

/// `out = x / r · scale` value by value.
fn div_scale(x: &[f32], r: f32, scale: &[f32], out: &mut [f32], avx2: bool) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: the caller detected AVX2; the three slices have one length (a row).
        unsafe { super::avx2::div_scale(x, r, scale, out) };
        return;
    }
    let _ = avx2;
    for ((o, &v), &s) in out.iter_mut().zip(x).zip(scale) {
        *o = v / r * s;
    }
}

/// `h += x / r · scale` value by value (the normed value rounded before the add).
fn add_div_scale(h: &mut [f32], x: &[f32], r: f32, scale: &[f32], avx2: bool) {
    #[cfg(target_arch = "x86_64")]
    if avx2 {
        // SAFETY: the caller detected AVX2; the three slices have one length (a row).
        unsafe { super::avx2::add_div_scale(h, x, r, scale) };
        return;
    }
    let _ = avx2;
    for ((hv, &v), &s) in h.iter_mut().zip(x).zip(scale) {
        *hv += v / r * s;
    }
}

/// `out = x / sqrt(mean(x²) + eps) · scale` per row of `dim = scale.len()` values, rows split
/// across the pool of `threads` as [`each_row`] says.
pub fn rms_norm(
    x: &[f32],
    scale: &[f32],
    eps: f32,
    out: &mut [f32],
    threads: Option<usize>,
) -> CoreResult<()> {
    let dim = scale.len();
    whole_rows(x.len(), dim, "x")?;
    if out.len() != x.len() {
        return Err(CoreError::internal("rms_norm output has the wrong length"));
    }
    let avx2 = avx2_rows();
    let scratch = || vec![0f32; if avx2 { 0 } else { dim }];
    each_row(out, dim, x.len(), threads, scratch, |squares, i, o| {
        let row = &x[i * dim..(i + 1) * dim];
        let r = rms_root(row, squares, eps, avx2);
        div_scale(row, r, scale, o, avx2);
    })
}

/// From this many values up, the row-by-row kernels split their rows across a rayon pool (a
/// prompt's rows; a decode step's single row stays on the calling thread). Each row is computed
/// alone either way, so the bits do not depend on the split.
const ROWS_PARALLEL_MIN: usize = 1 << 15;

/// `f(scratch, i, row)` for every `width`-value row `i` of `out`, where the kernel reads and writes
/// `values` values in all: from [`ROWS_PARALLEL_MIN`] up, the rows are split across the pool of
/// `threads` workers (rayon's global one for None), each worker with its own `scratch()`; below it,
/// on the calling thread without entering a pool at all, since entering one costs ~14 µs here
/// (measured 17.5 against 4.0 µs for a 640-value `rms_norm`), more than a decode step's row takes,
/// and a decode step makes five such calls per layer. `threads` is checked either way.
fn each_row<S>(
    out: &mut [f32],
    width: usize,
    values: usize,
    threads: Option<usize>,
    scratch: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, usize, &mut [f32]) + Sync + Send,
) -> CoreResult<()> {
    if values >= ROWS_PARALLEL_MIN {
        return crate::pool::run_in(threads, || {
            out.par_chunks_exact_mut(width)
                .enumerate()
                .for_each_init(&scratch, |s, (i, row)| f(s, i, row));
        });
    }
    if let Some(n) = threads {
        crate::pool::pool_for(n)?;
    }
    let mut s = scratch();
    for (i, row) in out.chunks_exact_mut(width).enumerate() {
        f(&mut s, i, row);
    }
    Ok(())
}

/// `h += rms_norm(y, scale)` row by row (the residual add after a block's output norm), with
/// numpy's rounding: the normed value is rounded to f32 before the add. Rows split as for
/// [`rms_norm`].
pub fn add_rms_norm(
    h: &mut [f32],
    y: &[f32],
    scale: &[f32],
    eps: f32,
    threads: Option<usize>,
) -> CoreResult<()> {
    let dim = scale.len();
    whole_rows(y.len(), dim, "y")?;
    if h.len() != y.len() {
        return Err(CoreError::invalid(format!(
            "h has {} values but y has {}",
            h.len(),
            y.len()
        )));
    }
    let avx2 = avx2_rows();
    let scratch = || vec![0f32; if avx2 { 0 } else { dim }];
    each_row(h, dim, y.len(), threads, scratch, |squares, i, hr| {
        let row = &y[i * dim..(i + 1) * dim];
        let r = rms_root(row, squares, eps, avx2);
        add_div_scale(hr, row, r, scale, avx2);
    })
}

/// The shapes of [`qk_norm_rope`]: `n` tokens, `heads` q and k heads of `head_dim` values.
#[derive(Debug, Clone, Copy)]
pub struct QkShape {
    /// Tokens (rows of the fused qkv projection).
    pub n: usize,
    /// Query heads plus key heads (adjacent at the start of each qkv row).
    pub heads: usize,
    /// Values per head (even).
    pub head_dim: usize,
}

/// The q and k heads of `qkv` (`n` rows, the q then k heads first in each), each RMS-normed with
/// its row of `scale` (`heads × head_dim`) and rotated by `cos`/`sin` (`n × head_dim`, `sin`'s first
/// half negated: `rotate_half(x) · sin == swap_halves(x) · that`), into `out` (`heads × n × head_dim`), rows split as for [`rms_norm`].
#[allow(clippy::too_many_arguments)]
pub fn qk_norm_rope(
    qkv: &[f32],
    shape: QkShape,
    scale: &[f32],
    cos: &[f32],
    sin: &[f32],
    eps: f32,
    out: &mut [f32],
    threads: Option<usize>,
) -> CoreResult<()> {
    let QkShape { n, heads, head_dim } = shape;
    if head_dim == 0 || head_dim % 2 != 0 {
        return Err(CoreError::invalid(format!(
            "head_dim must be even and positive, got {head_dim}"
        )));
    }
    let width = heads * head_dim;
    if n == 0 || qkv.len() % n != 0 || qkv.len() / n < width {
        return Err(CoreError::invalid(format!(
            "qkv must hold {n} rows of at least {width} values, got {}",
            qkv.len()
        )));
    }
    if scale.len() != width || cos.len() != n * head_dim || sin.len() != n * head_dim {
        return Err(CoreError::invalid(format!(
            "scale must hold {heads}×{head_dim} values and cos/sin {n}×{head_dim}"
        )));
    }
    if out.len() != heads * n * head_dim {
        return Err(CoreError::internal(
            "qk_norm_rope output has the wrong length",
        ));
    }
    let cols = qkv.len() / n;
    let half = head_dim / 2;
    let avx2 = avx2_rows();
    // Output row g · n + t is head g of token t.
    let head = |(squares, y): &mut (Vec<f32>, Vec<f32>), i: usize, o: &mut [f32]| {
        let (g, t) = (i / n, i % n);
        let sc = &scale[g * head_dim..(g + 1) * head_dim];
        let x = &qkv[t * cols + g * head_dim..t * cols + (g + 1) * head_dim];
        let r = rms_root(x, squares, eps, avx2);
        div_scale(x, r, sc, y, avx2);
        let (c, s) = (
            &cos[t * head_dim..(t + 1) * head_dim],
            &sin[t * head_dim..(t + 1) * head_dim],
        );
        // o = y · cos + swap_halves(y) · sin, one half at a time (no index arithmetic per value,
        // so the loops vectorise).
        let (y0, y1) = y.split_at(half);
        let (o0, o1) = o.split_at_mut(half);
        for (((o, &a), &b), (&c, &s)) in o0.iter_mut().zip(y0).zip(y1).zip(c.iter().zip(s)) {
            *o = a * c + b * s;
        }
        let (c1, s1) = (&c[half..], &s[half..]);
        for (((o, &a), &b), (&c, &s)) in o1.iter_mut().zip(y1).zip(y0).zip(c1.iter().zip(s1)) {
            *o = a * c + b * s;
        }
    };
    let scratch = || (vec![0f32; head_dim], vec![0f32; head_dim]);
    let values = out.len();
    each_row(out, head_dim, values, threads, scratch, head)
}

/// `√(2/π)` and `√(2/π) · 0.044715`, the constants of gelu's tanh form, rounded to f32.
pub(super) const GELU_A: f32 = 0.797_884_560_802_865_4_f64 as f32;
pub(super) const GELU_B: f32 = (0.797_884_560_802_865_4_f64 * 0.044715) as f32;

/// `exp(x)` for the logistic below: Cephes' single-precision scheme (`x = n·ln 2 + r` with ln 2
/// split in two, a degree-5 polynomial in `r`, then `2ⁿ` put in the exponent), within 2 ulp of
/// the true value on `[-87, 87]` (inputs are clamped to it). Fused multiply-adds in the same
/// places as [`super::avx2::gelu_times`], so both kernels give the same bits.
#[inline]
fn exp_clamped(x: f32) -> f32 {
    let x = x.clamp(-EXP_LIMIT, EXP_LIMIT);
    let n = x.mul_add(std::f32::consts::LOG2_E, 0.5).floor();
    let r = n.mul_add(-EXP_LN2_HI, x);
    let r = n.mul_add(-EXP_LN2_LO, r);
    let mut y = EXP_POLY[0];
    for &c in &EXP_POLY[1..] {
        y = y.mul_add(r, c);
    }
    let y = y.mul_add(r * r, r) + 1.0;
    y * f32::from_bits(((n as i32 + 127) as u32) << 23)
}

/// The clamp of [`exp_clamped`]'s input: `2ⁿ` stays a normal number for every `n` it gives.
pub(super) const EXP_LIMIT: f32 = 87.0;
/// ln 2 as a short high part (exact products with `n`) and the rest.
pub(super) const EXP_LN2_HI: f32 = 0.693_359_4;
pub(super) const EXP_LN2_LO: f32 = -2.121_944_4e-4;
/// Cephes' `expf` polynomial, highest degree first.
pub(super) const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    0.166_666_65,
    0.5,
];

/// `gelu(g) · u` for one value: gelu's tanh form `g · ½(1 + tanh(z))`, `z = g · (A + B·g²)`,
/// written `g / (1 + e^(−2z))` (the same function: `½(1 + tanh z)` is the logistic of `2z`).
#[inline]
pub(super) fn gelu_times_one(g: f32, u: f32) -> f32 {
    let z = ((g * GELU_B) * g + GELU_A) * g;
    g / (1.0 + exp_clamped(-2.0 * z)) * u
}

/// `gelu(gate) · up` for the rows of a fused `gate | up` projection (`n` rows of `2 · half`
/// values: the gate half, then the up half) into `out` (`n × half`), rows split as for
/// [`rms_norm`].
///
/// Why: numpy spent nine passes over a prompt's `n × 2048` values per layer, eight-tenths of it in
/// its `tanh`, on one core — ~9% of a quiet 108-token prefill. Not numpy's bits: its `tanh` is its
/// own SIMD approximation; this one is within a few ulp of the exact value (see the tests), the
/// size of the difference between two correct `tanh`s, far below the int8 rounding that the
/// down product applies to these values next.
pub fn gelu_times(
    gate_up: &[f32],
    half: usize,
    out: &mut [f32],
    threads: Option<usize>,
) -> CoreResult<()> {
    if half == 0 {
        return Err(CoreError::invalid("gate | up rows must not be empty"));
    }
    whole_rows(gate_up.len(), 2 * half, "gate_up")?;
    if out.len() * 2 != gate_up.len() {
        return Err(CoreError::internal(
            "gelu_times output has the wrong length",
        ));
    }
    each_row(
        out,
        half,
        gate_up.len(),
        threads,
        || (),
        |_, i, dst| {
            let (g, u) = gate_up[2 * i * half..2 * (i + 1) * half].split_at(half);
            #[cfg(target_arch = "x86_64")]
            if crate::vector::simd::simd_level() == crate::vector::simd::SimdLevel::Avx2 {
                // SAFETY: AVX2 and FMA were detected; g, u and dst hold `half` values each.
                unsafe { super::avx2::gelu_times(g, u, dst) };
                return;
            }
            gelu_times_portable(g, u, dst);
        },
    )
}

/// [`gelu_times`] for one row, value by value (the reference the AVX2 kernel matches).
pub fn gelu_times_portable(g: &[f32], u: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
        *o = gelu_times_one(g, u);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in about [-4, 4) (an LCG; no rand dependency needed).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 8.0
            })
            .collect()
    }

    /// The portable reference: the textbook formula in f64.
    fn reference_rms(x: &[f32], scale: &[f32], eps: f64) -> Vec<f64> {
        let mean = x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() / x.len() as f64;
        let r = (mean + eps).sqrt();
        x.iter()
            .zip(scale)
            .map(|(&v, &s)| f64::from(v) / r * f64::from(s))
            .collect()
    }

    fn close(a: f32, b: f64) -> bool {
        (f64::from(a) - b).abs() <= 1e-5 * b.abs().max(1e-3)
    }

    #[test]
    fn pairwise_sum_matches_a_plain_sum_and_numpys_blocks() {
        for n in [0, 1, 7, 8, 9, 100, 128, 129, 256, 640, 1000] {
            let a = values(n, n as u64);
            let plain: f64 = a.iter().map(|&v| f64::from(v)).sum();
            assert!(
                (f64::from(pairwise_sum(&a)) - plain).abs() < 1e-3,
                "n = {n}"
            );
        }
        // Exact on integers (no rounding anywhere), and the block split keeps every value.
        let ints: Vec<f32> = (0..640).map(|i| (i % 17) as f32).collect();
        let want: f32 = (0..640).map(|i| (i % 17) as f32).sum();
        assert_eq!(pairwise_sum(&ints), want);
        // Eight accumulators then ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7)): a value
        // below the last accumulator's ulp survives when paired with its own lane's partner.
        let mut a = vec![0f32; 16];
        a[0] = 1.0e8;
        a[8] = -1.0e8;
        a[1] = 1.0;
        assert_eq!(pairwise_sum(&a), 1.0);
    }

    #[test]
    fn rms_norm_matches_the_reference() {
        let (dim, rows) = (640, 3);
        let x = values(dim * rows, 1);
        let scale: Vec<f32> = values(dim, 2).iter().map(|v| 1.0 + v / 8.0).collect();
        let mut out = vec![0f32; dim * rows];
        rms_norm(&x, &scale, 1e-6, &mut out, None).unwrap();
        for (row, o) in x.chunks(dim).zip(out.chunks(dim)) {
            for (a, b) in o.iter().zip(reference_rms(row, &scale, 1e-6)) {
                assert!(close(*a, b), "{a} vs {b}");
            }
        }
        let mut h = values(dim * rows, 3);
        let h0 = h.clone();
        add_rms_norm(&mut h, &x, &scale, 1e-6, None).unwrap();
        for i in 0..dim * rows {
            assert_eq!(h[i], h0[i] + out[i]);
        }
        // A zero row stays zero (eps keeps the root positive).
        let mut z = vec![1f32; dim];
        rms_norm(&vec![0f32; dim], &scale, 1e-6, &mut z, None).unwrap();
        assert!(z.iter().all(|&v| v == 0.0));
    }

    /// gelu's tanh form in f64, times `u`.
    fn reference_gelu(g: f32, u: f32) -> f64 {
        let g = f64::from(g);
        let z = (2.0 / std::f64::consts::PI).sqrt() * (g + 0.044715 * g * g * g);
        g * 0.5 * (1.0 + z.tanh()) * f64::from(u)
    }

    #[test]
    fn gelu_times_is_within_a_few_ulp_of_the_exact_value() {
        let half = 1000;
        let mut gate_up = values(2 * half * 3, 9);
        // Far tails (the clamp, and a logistic that rounds to 0 or 1), zero, tiny values.
        gate_up[..8].copy_from_slice(&[-100.0, 100.0, -12.0, 12.0, 0.0, -0.0, 1e-20, -3e-8]);
        let mut out = vec![0f32; half * 3];
        gelu_times(&gate_up, half, &mut out, None).unwrap();
        for (r, o) in out.chunks(half).enumerate() {
            let row = &gate_up[r * 2 * half..(r + 1) * 2 * half];
            for (i, &v) in o.iter().enumerate() {
                let want = reference_gelu(row[i], row[half + i]);
                // f32 rounding of each step: a few ulp of the result, or of the tail's scale.
                let tol = 8.0 * f64::from(f32::EPSILON) * want.abs().max(1e-30)
                    + 1e-7 * f64::from(row[half + i]).abs() * f64::from(row[i]).abs().min(1.0);
                assert!(
                    (f64::from(v) - want).abs() <= tol,
                    "gelu({}) * {} = {v}, want {want}",
                    row[i],
                    row[half + i]
                );
            }
        }
        assert!(out[0].abs() < 1e-30); // gelu(-100): the clamped logistic, ~1e-36 of u
        assert_eq!(out[1], 100.0 * gate_up[half + 1]);
    }

    #[test]
    fn gelu_times_kernels_agree_bit_for_bit_and_in_parallel() {
        // 20 rows of 2048: past the parallel threshold; lengths not a multiple of eight.
        for (n, half) in [(20, 2048), (3, 13), (1, 7)] {
            let gate_up = values(n * 2 * half, half as u64);
            let mut got = vec![0f32; n * half];
            gelu_times(&gate_up, half, &mut got, Some(2)).unwrap();
            let mut want = vec![0f32; n * half];
            for (src, dst) in gate_up.chunks(2 * half).zip(want.chunks_mut(half)) {
                gelu_times_portable(&src[..half], &src[half..], dst);
            }
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&got), bits(&want), "n={n} half={half}");
        }
        let mut out = vec![0f32; 3];
        assert!(gelu_times(&[0f32; 7], 3, &mut out, None).is_err());
        assert!(gelu_times(&[], 0, &mut [], None).is_err());
    }

    #[test]
    fn rms_norm_rejects_ragged_rows() {
        let mut out = vec![0f32; 10];
        assert!(rms_norm(&[0f32; 10], &[1f32; 4], 1e-6, &mut out, None).is_err());
        let mut h = vec![0f32; 8];
        assert!(add_rms_norm(&mut h, &[0f32; 4], &[1f32; 4], 1e-6, None).is_err());
    }

    #[test]
    fn qk_norm_rope_matches_the_reference() {
        let (n, heads, d, extra) = (3, 5, 8, 16);
        let cols = heads * d + extra;
        let qkv = values(n * cols, 4);
        let scale = values(heads * d, 5);
        let angle: Vec<f64> = (0..n * d).map(|i| i as f64 * 0.37).collect();
        let cos: Vec<f32> = angle.iter().map(|a| a.cos() as f32).collect();
        let sin: Vec<f32> = angle
            .iter()
            .enumerate()
            .map(|(i, a)| if i % d < d / 2 { -a.sin() } else { a.sin() } as f32)
            .collect();
        let mut out = vec![0f32; heads * n * d];
        let shape = QkShape {
            n,
            heads,
            head_dim: d,
        };
        qk_norm_rope(&qkv, shape, &scale, &cos, &sin, 1e-6, &mut out, None).unwrap();
        for g in 0..heads {
            for t in 0..n {
                let x = &qkv[t * cols + g * d..t * cols + (g + 1) * d];
                let y = reference_rms(x, &scale[g * d..(g + 1) * d], 1e-6);
                for k in 0..d {
                    let rot = if k < d / 2 {
                        -y[k + d / 2]
                    } else {
                        y[k - d / 2]
                    };
                    let a = angle[t * d + k];
                    let want = y[k] * a.cos() + rot * a.sin();
                    let got = out[(g * n + t) * d + k];
                    assert!((f64::from(got) - want).abs() <= 1e-5 * want.abs().max(1.0));
                }
            }
        }
        assert!(qk_norm_rope(
            &qkv,
            QkShape {
                n,
                heads,
                head_dim: 7
            },
            &scale,
            &cos,
            &sin,
            1e-6,
            &mut out,
            None
        )
        .is_err());
    }

    #[test]
    fn rows_give_the_same_bits_on_any_pool_and_below_the_split() {
        // 64 rows of 640 values: past the parallel threshold; then a single decode-like row.
        let dim = 640;
        let scale = values(dim, 11);
        for n in [64, 1] {
            let x = values(n * dim, 12);
            let mut want = vec![0f32; n * dim];
            let mut squares = vec![0f32; dim];
            for (row, o) in x.chunks(dim).zip(want.chunks_mut(dim)) {
                let r = rms_root(row, &mut squares, 1e-6, false);
                for ((o, &v), &s) in o.iter_mut().zip(row).zip(&scale) {
                    *o = v / r * s;
                }
            }
            for threads in [None, Some(1), Some(2), Some(3)] {
                let mut got = vec![0f32; n * dim];
                rms_norm(&x, &scale, 1e-6, &mut got, threads).unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "n={n} threads={threads:?}");
            }
            // A bad pool size is refused on either side of the split.
            let mut got = vec![0f32; n * dim];
            assert!(rms_norm(&x, &scale, 1e-6, &mut got, Some(0)).is_err());
        }
    }

    #[test]
    fn the_avx2_row_kernels_give_the_portable_bits() {
        if !avx2_rows() {
            return; // the portable forms are the only ones here
        }
        // Fewer than eight values, one block of at most 128 with and without a tail, and the
        // recursive halves above 128 (numpy's split on multiples of eight).
        for (k, dim) in [1, 7, 8, 13, 64, 127, 128, 129, 256, 640, 1000, 2048]
            .into_iter()
            .enumerate()
        {
            let x = values(dim, 30 + k as u64);
            let scale = values(dim, 50 + k as u64);
            let mut squares = vec![0f32; dim];
            let (a, b) = (
                sum_squares(&x, &mut squares, false),
                sum_squares(&x, &mut squares, true),
            );
            assert_eq!(a.to_bits(), b.to_bits(), "sum of squares, dim {dim}");
            let r = rms_root(&x, &mut squares, 1e-6, false);
            let (mut o1, mut o2) = (vec![0f32; dim], vec![0f32; dim]);
            div_scale(&x, r, &scale, &mut o1, false);
            div_scale(&x, r, &scale, &mut o2, true);
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&o1), bits(&o2), "x / r * scale, dim {dim}");
            let (mut h1, mut h2) = (values(dim, 70 + k as u64), values(dim, 70 + k as u64));
            add_div_scale(&mut h1, &x, r, &scale, false);
            add_div_scale(&mut h2, &x, r, &scale, true);
            assert_eq!(bits(&h1), bits(&h2), "h += x / r * scale, dim {dim}");
        }
    }
}
