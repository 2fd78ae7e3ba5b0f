//! The element-wise parts and the attention of a BERT encoder layer (the numpy sentence embedder's
//! forward pass), over packed token rows: no padding, each text a run of rows.
//!
//! Why: on a batch of 32 forty-word texts numpy spent more time in these than in the four BLAS
//! products of each layer — exact GELU alone is a dozen array passes (a third of the batch), the
//! layer norms and the bias adds a few each, and attention as a batched matmul over 32 × 12 tiny
//! 45 × 32 matrices runs at a few GFLOP/s. Here each is one pass over the rows, vectorised (AVX2
//! where the CPU has it: every reduction keeps eight fixed lanes, so both code paths give the same
//! bits), split over rayon's threads by rows once an input is big enough to pay for the hand-off
//! (a query's dozen tokens stay on the calling thread).
//!
//! Arithmetic: exp is Cephes' `expf` (range reduction by ln 2, degree-6 polynomial; within 2 ulp of
//! the correctly rounded value); erf is Abramowitz & Stegun 7.1.26 (|error| < 1.5e-7), the formula
//! the numpy embedder used, so vectors agree with its to ~1e-7 cosine.

use rayon::prelude::*;

use crate::errors::{whole_rows, CoreError, CoreResult};

/// Values at or above which a kernel splits its rows over rayon's pool.
pub const PARALLEL_VALUES: usize = 1 << 16;
/// Attention work (Σ tokens² · hidden) at or above which texts are shared out over rayon's pool.
pub const PARALLEL_ATTENTION: usize = 1 << 20;

const LANES: usize = 8;

/// `e^x` in f32 (Cephes `expf`); inputs below -87.3 give 0, above 88.3 give ~2e38.
/// Written with selects and bit casts only (no saturating casts or libm calls), so a loop of it
/// vectorises.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer in the low bits
    let input = x;
    let x = if x < -87.3 { -87.3 } else { x };
    let x = if x > 88.3 { 88.3 } else { x };
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND; // round(x / ln 2), in -126..=127
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5; // Cephes: 5.0000001201e-1, which is 0.5 in f32
    let y = p * (r * r) + r + 1.0;
    // 2^n through the exponent bits: the low bits of `shifted` hold n (offset by 0x4B40_0000)
    let biased = shifted.to_bits().wrapping_sub(0x4B40_0000 - 127);
    let value = y * f32::from_bits(biased << 23);
    if input < -87.3 {
        0.0
    } else {
        value
    }
}

/// Exact (erf) GELU of one value, erf by Abramowitz & Stegun 7.1.26 in the numpy embedder's order.
#[inline(always)]
fn gelu(x: f32) -> f32 {
    let a = x.abs();
    let z = a * std::f32::consts::FRAC_1_SQRT_2;
    let t = 1.0 / (z * 0.327_591_1 + 1.0);
    let mut poly = t * 1.061_405_4;
    for c in [-1.453_152_1, 1.421_413_8, -0.284_496_74, 0.254_829_6] {
        poly = (poly + c) * t;
    }
    let tail = poly * exp(-(z * z)); // 1 - erf(|x| / sqrt 2)
    let pos = if x > 0.0 { x } else { 0.0 };
    pos - tail * a * 0.5
}

/// Sum of `a` in eight fixed lanes (the same bits whether or not the loop is vectorised).
#[inline(always)]
fn lane_sum(a: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = a.chunks_exact(LANES);
    for c in &mut chunks {
        for (s, &v) in acc.iter_mut().zip(c) {
            *s += v;
        }
    }
    let mut total =
        ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for &v in chunks.remainder() {
        total += v;
    }
    total
}

/// Dot product in eight fixed lanes.
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; LANES];
    let mut ca = a.chunks_exact(LANES);
    let mut cb = b.chunks_exact(LANES);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for ((s, &u), &v) in acc.iter_mut().zip(x).zip(y) {
            *s += u * v;
        }
    }
    let mut total =
        ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
    for (&u, &v) in ca.remainder().iter().zip(cb.remainder()) {
        total += u * v;
    }
    total
}

/// Runs `body` compiled for AVX2 + FMA where the CPU has them (wider vectors; no fused
/// multiply-adds are formed, so the bits match the portable build), else as built.
macro_rules! dispatch {
    ($name:ident, $body:ident, ($($arg:ident: $ty:ty),*)) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if crate::vector::simd::simd_level() == crate::vector::simd::SimdLevel::Avx2 {
                    // SAFETY: the CPU reports AVX2 and FMA (simd_level checked both).
                    unsafe { wide($($arg),*) };
                    return;
                }
            }
            $body($($arg),*)
        }
    };
}

#[inline(always)]
fn bias_gelu_rows_body(x: &mut [f32], bias: &[f32]) {
    for row in x.chunks_exact_mut(bias.len()) {
        for (v, &b) in row.iter_mut().zip(bias) {
            *v = gelu(*v + b);
        }
    }
}
dispatch!(bias_gelu_rows, bias_gelu_rows_body, (x: &mut [f32], bias: &[f32]));

/// LayerNorm of one row `x + bias + residual` (written to `x`): mean, centred variance, both over
/// the row's `n` values, `centred / sqrt(var + eps) * weight + shift`.
#[inline(always)]
fn add_layer_norm_rows_body(x: &mut [f32], residual: &[f32], p: &NormParams<'_>) {
    let dim = p.bias.len();
    let n = dim as f32;
    for (row, res) in x.chunks_exact_mut(dim).zip(residual.chunks_exact(dim)) {
        for ((v, &b), &r) in row.iter_mut().zip(p.bias).zip(res) {
            *v = *v + b + r;
        }
        let mean = lane_sum(row) / n;
        for v in row.iter_mut() {
            *v -= mean;
        }
        let var = dot(row, row) / n;
        let inv = 1.0 / (var + p.eps).sqrt();
        for ((v, &w), &s) in row.iter_mut().zip(p.weight).zip(p.shift) {
            *v = *v * inv * w + s;
        }
    }
}
dispatch!(
    add_layer_norm_rows,
    add_layer_norm_rows_body,
    (x: &mut [f32], residual: &[f32], p: &NormParams<'_>)
);

/// The per-column vectors of [`add_layer_norm`].
#[derive(Debug, Clone, Copy)]
pub struct NormParams<'a> {
    /// Added to every row before the norm (the preceding product's bias).
    pub bias: &'a [f32],
    /// The norm's scale.
    pub weight: &'a [f32],
    /// The norm's shift.
    pub shift: &'a [f32],
    /// Added to the variance.
    pub eps: f32,
}

/// Rows per parallel piece: about `PARALLEL_VALUES / 4` values each, at least one row.
fn piece_rows(dim: usize) -> usize {
    (PARALLEL_VALUES / 4 / dim.max(1)).max(1)
}

/// `x = gelu(x + bias)` row by row (rows of `bias.len()` values), exact (erf) GELU.
pub fn bias_gelu(x: &mut [f32], bias: &[f32]) -> CoreResult<()> {
    let dim = bias.len();
    whole_rows(x.len(), dim, "x")?;
    if x.len() >= PARALLEL_VALUES {
        x.par_chunks_mut(piece_rows(dim) * dim)
            .for_each(|part| bias_gelu_rows(part, bias));
    } else {
        bias_gelu_rows(x, bias);
    }
    Ok(())
}

/// `x = layer_norm(x + bias + residual) * weight + shift` row by row (rows of `bias.len()` values;
/// `residual` has `x`'s shape, `weight` and `shift` one row's).
pub fn add_layer_norm(x: &mut [f32], residual: &[f32], p: NormParams<'_>) -> CoreResult<()> {
    let dim = p.bias.len();
    whole_rows(x.len(), dim, "x")?;
    if residual.len() != x.len() {
        return Err(CoreError::invalid(format!(
            "residual has {} values but x has {}",
            residual.len(),
            x.len()
        )));
    }
    if p.weight.len() != dim || p.shift.len() != dim {
        return Err(CoreError::invalid(format!(
            "weight and shift must have {dim} values (bias's), got {} and {}",
            p.weight.len(),
            p.shift.len()
        )));
    }
    if x.len() >= PARALLEL_VALUES {
        let step = piece_rows(dim) * dim;
        x.par_chunks_mut(step)
            .zip(residual.par_chunks(step))
            .for_each(|(part, res)| add_layer_norm_rows(part, res, &p));
    } else {
        add_layer_norm_rows(x, residual, &p);
    }
    Ok(())
}

/// The shapes of [`attention`].
#[derive(Debug, Clone, Copy)]
pub struct HeadShape {
    /// Attention heads.
    pub heads: usize,
    /// Values per head (`hidden = heads · head_dim`).
    pub head_dim: usize,
}

/// Queries handled together (each key and value row loaded once per block).
const QB: usize = 4;

/// Self-attention of one text: `qkv` its rows (`n × 3·hidden`, q then k then v, head-major within
/// each), `ctx` its output rows (`n × hidden`). Per head, blocks of [`QB`] queries against runs of
/// eight keys (then eight value columns) at a time, accumulating in registers: a small GEMM with
/// the softmax between its two products. The blocks are [`score_block`] and [`context_block`],
/// written out in AVX2 intrinsics where the CPU has it: LLVM left their portable loops scalar, a
/// spill per lane (the intrinsics made attention ~3.2x faster, the same bits).
#[inline(always)]
fn attend_text_body(
    qkv: &[f32],
    ctx: &mut [f32],
    shape: &HeadShape,
    scratch: &mut Scratch,
    wide: bool,
) {
    let (hd, hidden) = (shape.head_dim, shape.heads * shape.head_dim);
    let n = ctx.len() / hidden;
    let n_pad = n.div_ceil(LANES) * LANES;
    let hd_pad = hd.div_ceil(LANES) * LANES;
    let scale = 1.0 / (hd as f32).sqrt();
    let Scratch {
        keys,
        values,
        scores,
        queries,
    } = scratch;
    keys.clear();
    keys.resize(hd * n_pad, 0.0);
    values.clear();
    values.resize(n * hd_pad, 0.0);
    scores.clear();
    scores.resize(QB * n_pad, 0.0);
    queries.clear();
    queries.resize(QB * hd, 0.0);
    for h in 0..shape.heads {
        // keys transposed (head_dim × n_pad, zero-padded), values n × hd_pad
        for (j, row) in qkv.chunks_exact(3 * hidden).enumerate() {
            for (c, &k) in row[hidden + h * hd..hidden + (h + 1) * hd]
                .iter()
                .enumerate()
            {
                keys[c * n_pad + j] = k;
            }
            values[j * hd_pad..j * hd_pad + hd]
                .copy_from_slice(&row[2 * hidden + h * hd..2 * hidden + (h + 1) * hd]);
        }
        for i0 in (0..n).step_by(QB) {
            let rows = QB.min(n - i0);
            for r in 0..QB {
                let q = &mut queries[r * hd..(r + 1) * hd];
                if r < rows {
                    let src = &qkv[(i0 + r) * 3 * hidden + h * hd..][..hd];
                    for (d, &v) in q.iter_mut().zip(src) {
                        *d = v * scale;
                    }
                } else {
                    q.fill(0.0);
                }
            }
            // scores = q · kᵀ, QB × 8 at a time
            for jb in (0..n_pad).step_by(LANES) {
                let acc = score_block(wide, queries, &keys[jb..], n_pad, hd);
                for (r, a) in acc.iter().enumerate() {
                    scores[r * n_pad + jb..][..LANES].copy_from_slice(a);
                }
            }
            // softmax over the n real keys of each row (the padded ones get weight 0)
            for r in 0..rows {
                let row = &mut scores[r * n_pad..(r + 1) * n_pad];
                let max = row[..n].iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
                for v in row[..n].iter_mut() {
                    *v = exp(*v - max);
                }
                let inv = 1.0 / lane_sum(&row[..n]);
                for v in row[..n].iter_mut() {
                    *v *= inv;
                }
                row[n..].fill(0.0);
            }
            // context = p · v, QB × 8 columns at a time
            for cb in (0..hd_pad).step_by(LANES) {
                let acc = context_block(wide, scores, &values[cb..], n_pad, hd_pad, n);
                let width = LANES.min(hd - cb);
                for (r, a) in acc.iter().enumerate().take(rows) {
                    let at = (i0 + r) * hidden + h * hd + cb;
                    ctx[at..at + width].copy_from_slice(&a[..width]);
                }
            }
        }
    }
}
/// `out[r] = Σ_j a[r · a_stride + j] · b[j · b_stride ..][..8]` for `r < QB`, `j < len`, in
/// ascending `j`, a product then a sum per step (no fused multiply-add, so the AVX2 and portable
/// versions give the same bits). Both blocks of the attention are this shape.
#[inline(always)]
fn broadcast_sums(
    wide: bool,
    a: &[f32],
    a_stride: usize,
    b: &[f32],
    b_stride: usize,
    len: usize,
) -> [[f32; LANES]; QB] {
    #[cfg(target_arch = "x86_64")]
    if wide {
        // SAFETY: `wide` is only true in attend_text's AVX2 build (and the tests' AVX2 check), on a
        // CPU that has AVX2.
        return unsafe { avx2::broadcast_sums(a, a_stride, b, b_stride, len) };
    }
    let _ = wide;
    let mut acc = [[0f32; LANES]; QB];
    for j in 0..len {
        let v = &b[j * b_stride..][..LANES];
        for (r, acc) in acc.iter_mut().enumerate() {
            let x = a[r * a_stride + j];
            for (o, &vv) in acc.iter_mut().zip(v) {
                *o += x * vv;
            }
        }
    }
    acc
}

/// `QB × 8` scores of one query block (rows of `hd`) against keys `keys[c * n_pad ..][..8]`
/// (`c < hd`), each a sum over `c` in order of `q · k`.
#[inline(always)]
fn score_block(
    wide: bool,
    queries: &[f32],
    keys: &[f32],
    n_pad: usize,
    hd: usize,
) -> [[f32; LANES]; QB] {
    broadcast_sums(wide, queries, hd, keys, n_pad, hd)
}

/// `QB × 8` context values: for each of the block's score rows (`scores[r * n_pad ..]`), the sum over
/// the `n` keys in order of `p · v` with `v = values[j * hd_pad ..][..8]`.
#[inline(always)]
fn context_block(
    wide: bool,
    scores: &[f32],
    values: &[f32],
    n_pad: usize,
    hd_pad: usize,
    n: usize,
) -> [[f32; LANES]; QB] {
    assert!(n <= n_pad);
    broadcast_sums(wide, scores, n_pad, values, hd_pad, n)
}

/// The attention blocks in AVX2 registers: LLVM left the portable loops scalar (a spill per lane).
#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{LANES, QB};
    use std::arch::x86_64::*;

    /// [`super::broadcast_sums`] in AVX2 registers, with the same operations in the same order.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn broadcast_sums(
        a: &[f32],
        a_stride: usize,
        b: &[f32],
        b_stride: usize,
        len: usize,
    ) -> [[f32; LANES]; QB] {
        assert!(
            len == 0
                || (a.len() >= (QB - 1) * a_stride + len
                    && b.len() >= (len - 1) * b_stride + LANES)
        );
        let mut acc = [_mm256_setzero_ps(); QB];
        for j in 0..len {
            // SAFETY: j * b_stride + 8 <= b.len() and r * a_stride + j < a.len() (asserted above).
            unsafe {
                let v = _mm256_loadu_ps(b.as_ptr().add(j * b_stride));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let x = _mm256_set1_ps(*a.get_unchecked(r * a_stride + j));
                    *acc = _mm256_add_ps(*acc, _mm256_mul_ps(x, v));
                }
            }
        }
        let mut out = [[0f32; LANES]; QB];
        for (o, acc) in out.iter_mut().zip(acc) {
            // SAFETY: o is 8 floats.
            unsafe { _mm256_storeu_ps(o.as_mut_ptr(), acc) };
        }
        out
    }
}

fn attend_text(qkv: &[f32], ctx: &mut [f32], shape: &HeadShape, scratch: &mut Scratch) {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx2,fma")]
        fn wide(qkv: &[f32], ctx: &mut [f32], shape: &HeadShape, scratch: &mut Scratch) {
            attend_text_body(qkv, ctx, shape, scratch, true)
        }
        if crate::vector::simd::simd_level() == crate::vector::simd::SimdLevel::Avx2 {
            // SAFETY: the CPU reports AVX2 and FMA (simd_level checked both).
            unsafe { wide(qkv, ctx, shape, scratch) };
            return;
        }
    }
    attend_text_body(qkv, ctx, shape, scratch, false)
}

#[derive(Default)]
struct Scratch {
    keys: Vec<f32>,
    values: Vec<f32>,
    scores: Vec<f32>,
    queries: Vec<f32>,
}

/// Multi-head self-attention of packed texts: `qkv` is `tokens × 3·hidden` (each row q, k, v, the
/// heads in order in each), the texts consecutive runs of `lengths` rows; each token attends to its
/// own text's tokens only. Writes `ctx` (`tokens × hidden`): softmax(q·kᵀ / sqrt(head_dim)) · v.
pub fn attention(
    qkv: &[f32],
    lengths: &[usize],
    shape: HeadShape,
    ctx: &mut [f32],
) -> CoreResult<()> {
    let hidden = shape.heads * shape.head_dim;
    if hidden == 0 {
        return Err(CoreError::invalid("heads and head_dim must be positive"));
    }
    let tokens = whole_rows(qkv.len(), 3 * hidden, "qkv")?;
    if lengths.iter().sum::<usize>() != tokens {
        return Err(CoreError::invalid(format!(
            "lengths add up to {} but qkv has {tokens} rows",
            lengths.iter().sum::<usize>()
        )));
    }
    if ctx.len() != tokens * hidden {
        return Err(CoreError::internal("attention output has the wrong length"));
    }
    let mut texts: Vec<(&[f32], &mut [f32])> = Vec::with_capacity(lengths.len());
    let (mut q_rest, mut c_rest) = (qkv, ctx);
    for &n in lengths {
        let (q, qr) = q_rest.split_at(n * 3 * hidden);
        let (c, cr) = std::mem::take(&mut c_rest).split_at_mut(n * hidden);
        texts.push((q, c));
        (q_rest, c_rest) = (qr, cr);
    }
    let work: usize = lengths.iter().map(|&n| n * n * hidden).sum();
    if work >= PARALLEL_ATTENTION && texts.len() > 1 {
        texts
            .into_par_iter()
            .for_each_init(Scratch::default, |s, (q, c)| attend_text(q, c, &shape, s));
    } else {
        let mut s = Scratch::default();
        for (q, c) in texts {
            attend_text(q, c, &shape, &mut s);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erf64(x: f64) -> f64 {
        // series / continued fraction free reference: integrate with Simpson's rule (fine for tests)
        let n = 2000;
        let h = x / n as f64;
        let f = |t: f64| (-t * t).exp();
        let mut s = f(0.0) + f(x);
        for i in 1..n {
            s += f(i as f64 * h) * if i % 2 == 1 { 4.0 } else { 2.0 };
        }
        s * h / 3.0 * 2.0 / std::f64::consts::PI.sqrt()
    }

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn avx2_blocks_give_the_portable_bits() {
        if crate::vector::simd::simd_level() != crate::vector::simd::SimdLevel::Avx2 {
            return; // the AVX2 kernels cannot run here; tests/native checks the level the CPU has
        }
        let mut seed = 7u64;
        let (hd, n_pad, hd_pad) = (32, 24, 40);
        let queries: Vec<f32> = (0..QB * hd).map(|_| lcg(&mut seed)).collect();
        let keys: Vec<f32> = (0..hd * n_pad).map(|_| lcg(&mut seed)).collect();
        let scores: Vec<f32> = (0..QB * n_pad).map(|_| lcg(&mut seed)).collect();
        let values: Vec<f32> = (0..n_pad * hd_pad).map(|_| lcg(&mut seed)).collect();
        let bits = |b: [[f32; LANES]; QB]| b.map(|row| row.map(f32::to_bits));
        assert_eq!(
            bits(score_block(true, &queries, &keys, n_pad, hd)),
            bits(score_block(false, &queries, &keys, n_pad, hd))
        );
        for n in [0, 1, 17, n_pad] {
            assert_eq!(
                bits(context_block(true, &scores, &values, n_pad, hd_pad, n)),
                bits(context_block(false, &scores, &values, n_pad, hd_pad, n)),
                "n={n}"
            );
        }
    }

    #[test]
    fn exp_is_close_to_std() {
        for i in -870..=880 {
            let x = i as f32 * 0.1;
            let (got, want) = (exp(x), (x as f64).exp());
            assert!(
                ((got as f64 - want) / want).abs() < 3e-7,
                "exp({x}) = {got}, want {want}"
            );
        }
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-1000.0), 0.0);
        assert_eq!(gelu(-40.0), 0.0);
    }

    #[test]
    fn gelu_matches_the_erf_definition() {
        let mut x: Vec<f32> = (-80..=80).map(|i| i as f32 * 0.1).collect();
        let bias = vec![0.5f32; x.len()];
        let want: Vec<f64> = x
            .iter()
            .map(|&v| {
                let v = v as f64 + 0.5;
                0.5 * v * (1.0 + erf64(v / std::f64::consts::SQRT_2))
            })
            .collect();
        bias_gelu(&mut x, &bias).unwrap();
        for (g, w) in x.iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 2e-6, "{g} vs {w}");
        }
        assert_eq!(gelu(0.0), 0.0);
        assert!(bias_gelu(&mut [0f32; 5], &[0f32; 2]).is_err());
    }

    #[test]
    fn parallel_and_serial_paths_agree_bit_for_bit() {
        let dim = 384;
        let rows = PARALLEL_VALUES / dim + 3;
        let mut seed = 1;
        let x: Vec<f32> = (0..rows * dim).map(|_| lcg(&mut seed) * 4.0).collect();
        let res: Vec<f32> = (0..rows * dim).map(|_| lcg(&mut seed)).collect();
        let bias: Vec<f32> = (0..dim).map(|_| lcg(&mut seed)).collect();
        let w: Vec<f32> = (0..dim).map(|_| lcg(&mut seed)).collect();
        let p = NormParams {
            bias: &bias,
            weight: &w,
            shift: &bias,
            eps: 1e-12,
        };
        let mut big = x.clone();
        bias_gelu(&mut big, &bias).unwrap();
        add_layer_norm(&mut big, &res, p).unwrap();
        let mut small = x.clone();
        for (row, r) in small.chunks_exact_mut(dim).zip(res.chunks_exact(dim)) {
            bias_gelu(row, &bias).unwrap();
            add_layer_norm(row, r, p).unwrap();
        }
        assert_eq!(big, small);
    }

    #[test]
    fn layer_norm_matches_a_f64_reference() {
        let dim = 37; // not a multiple of the lanes
        let mut seed = 7;
        let x: Vec<f32> = (0..3 * dim).map(|_| lcg(&mut seed) * 3.0).collect();
        let res: Vec<f32> = (0..3 * dim).map(|_| lcg(&mut seed)).collect();
        let bias: Vec<f32> = (0..dim).map(|_| lcg(&mut seed)).collect();
        let w: Vec<f32> = (0..dim).map(|_| lcg(&mut seed) + 1.5).collect();
        let s: Vec<f32> = (0..dim).map(|_| lcg(&mut seed)).collect();
        let mut got = x.clone();
        let p = NormParams {
            bias: &bias,
            weight: &w,
            shift: &s,
            eps: 1e-5,
        };
        add_layer_norm(&mut got, &res, p).unwrap();
        for r in 0..3 {
            let row: Vec<f64> = (0..dim)
                .map(|i| (x[r * dim + i] + bias[i] + res[r * dim + i]) as f64)
                .collect();
            let mean = row.iter().sum::<f64>() / dim as f64;
            let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / dim as f64;
            for i in 0..dim {
                let want = (row[i] - mean) / (var + 1e-5).sqrt() * w[i] as f64 + s[i] as f64;
                assert!((got[r * dim + i] as f64 - want).abs() < 1e-5, "{r},{i}");
            }
        }
        let mut short = vec![0f32; dim];
        assert!(add_layer_norm(&mut short, &res[..dim - 1], p).is_err());
    }

    fn attention_reference(qkv: &[f32], lengths: &[usize], heads: usize, hd: usize) -> Vec<f64> {
        let hidden = heads * hd;
        let mut out = vec![0f64; qkv.len() / 3];
        let mut start = 0;
        for &n in lengths {
            for h in 0..heads {
                for i in 0..n {
                    let at = |t: usize, part: usize, c: usize| {
                        qkv[(start + t) * 3 * hidden + part * hidden + h * hd + c] as f64
                    };
                    let s: Vec<f64> = (0..n)
                        .map(|j| {
                            (0..hd).map(|c| at(i, 0, c) * at(j, 1, c)).sum::<f64>()
                                / (hd as f64).sqrt()
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|v| (v - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for c in 0..hd {
                        out[(start + i) * hidden + h * hd + c] =
                            (0..n).map(|j| e[j] / z * at(j, 2, c)).sum::<f64>();
                    }
                }
            }
            start += n;
        }
        out
    }

    #[test]
    fn attention_keeps_texts_apart_and_matches_a_reference() {
        let (heads, hd) = (3, 10);
        let lengths = [1, 5, 2];
        let tokens: usize = lengths.iter().sum();
        let mut seed = 3;
        let qkv: Vec<f32> = (0..tokens * 3 * heads * hd)
            .map(|_| lcg(&mut seed) * 2.0)
            .collect();
        let mut ctx = vec![0f32; tokens * heads * hd];
        attention(
            &qkv,
            &lengths,
            HeadShape {
                heads,
                head_dim: hd,
            },
            &mut ctx,
        )
        .unwrap();
        let want = attention_reference(&qkv, &lengths, heads, hd);
        for (g, w) in ctx.iter().zip(&want) {
            assert!((*g as f64 - w).abs() < 1e-5, "{g} vs {w}");
        }
        // a one-token text attends to itself only: its context is its own value row
        let hidden = heads * hd;
        assert_eq!(&ctx[..hidden], &qkv[2 * hidden..3 * hidden]);
        assert!(attention(
            &qkv,
            &[1, 5],
            HeadShape {
                heads,
                head_dim: hd
            },
            &mut ctx
        )
        .is_err());
    }

    #[test]
    fn parallel_attention_matches_serial() {
        let (heads, hd) = (4, 32);
        let lengths: Vec<usize> = (0..24).map(|i| 40 + i % 7).collect();
        let tokens: usize = lengths.iter().sum();
        assert!(lengths.iter().map(|n| n * n * heads * hd).sum::<usize>() >= PARALLEL_ATTENTION);
        let mut seed = 11;
        let qkv: Vec<f32> = (0..tokens * 3 * heads * hd)
            .map(|_| lcg(&mut seed))
            .collect();
        let shape = HeadShape {
            heads,
            head_dim: hd,
        };
        let mut all = vec![0f32; tokens * heads * hd];
        attention(&qkv, &lengths, shape, &mut all).unwrap();
        let (mut start, mut one_by_one) = (0, Vec::new());
        for &n in &lengths {
            let mut c = vec![0f32; n * heads * hd];
            attention(
                &qkv[start * 3 * heads * hd..(start + n) * 3 * heads * hd],
                &[n],
                shape,
                &mut c,
            )
            .unwrap();
            one_by_one.extend(c);
            start += n;
        }
        assert_eq!(all, one_by_one);
    }
}
