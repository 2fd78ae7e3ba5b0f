//! The AVX2 + FMA kernels of the int8 products (x86-64; chosen at run time).

use super::BLOCK;
use crate::vector::simd::avx2::hsum;
use std::arch::x86_64::*;

/// # Safety
/// AVX2 + FMA available; `wc`, `qc` hold `ws.len() * 32` codes; `qs.len() == ws.len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn row_dot(wc: &[i8], ws: &[f32], qc: &[i8], qs: &[f32]) -> f32 {
    let nb = ws.len();
    let ones = _mm256_set1_epi16(1);
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let (w, q) = (wc.as_ptr(), qc.as_ptr());
    let mut b = 0;
    // SAFETY: block b covers bytes [32b, 32b + 32) of both rows, inside their length.
    unsafe {
        while b + 2 <= nb {
            _mm_prefetch::<_MM_HINT_T0>(w.wrapping_add(b * BLOCK + PREFETCH).cast());
            let vw0 = _mm256_loadu_si256(w.add(b * BLOCK).cast());
            let vq0 = _mm256_loadu_si256(q.add(b * BLOCK).cast());
            let vw1 = _mm256_loadu_si256(w.add((b + 1) * BLOCK).cast());
            let vq1 = _mm256_loadu_si256(q.add((b + 1) * BLOCK).cast());
            let p0 = _mm256_madd_epi16(
                _mm256_maddubs_epi16(_mm256_abs_epi8(vq0), _mm256_sign_epi8(vw0, vq0)),
                ones,
            );
            let p1 = _mm256_madd_epi16(
                _mm256_maddubs_epi16(_mm256_abs_epi8(vq1), _mm256_sign_epi8(vw1, vq1)),
                ones,
            );
            let d0 = _mm256_set1_ps(*ws.get_unchecked(b) * *qs.get_unchecked(b));
            let d1 = _mm256_set1_ps(*ws.get_unchecked(b + 1) * *qs.get_unchecked(b + 1));
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), d0, acc0);
            acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), d1, acc1);
            b += 2;
        }
        if b < nb {
            let vw = _mm256_loadu_si256(w.add(b * BLOCK).cast());
            let vq = _mm256_loadu_si256(q.add(b * BLOCK).cast());
            let p = _mm256_madd_epi16(
                _mm256_maddubs_epi16(_mm256_abs_epi8(vq), _mm256_sign_epi8(vw, vq)),
                ones,
            );
            let d = _mm256_set1_ps(*ws.get_unchecked(b) * *qs.get_unchecked(b));
            acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), d, acc0);
        }
        hsum(_mm256_add_ps(acc0, acc1))
    }
}

/// How far ahead of the block in hand [`row_dot`] asks for weight bytes (`prefetcht0`). A decode
/// step's products are one input row against every weight row, a stream of short rows (640 bytes
/// in the output head) each ending in a horizontal sum; the hardware prefetcher alone left the
/// 168 MB head product ~1.3x the time of a plain f32 scan of the same bytes, and asking 4 KiB
/// ahead made it ~9% faster (alternated runs, load ~1.5; 2 KiB within noise of it). A prefetch
/// past the end of the codes is harmless: it never faults.
const PREFETCH: usize = 4096;

/// Two weight rows by four input rows under the prompt products' contract
/// ([`super::kernels::portable_block_fma`], bit for bit): per block the eight `(row, input)`
/// pairs' lane sums (`maddubs` + `madd`) are reduced to their exact integer sums in one vector
/// (`hadd` twice, then the two 128-bit halves added), converted, and multiply-added with the eight
/// scale products into one accumulator. `out[4i + j]` is row i by input j. The rows and inputs
/// may repeat (a caller pads a short tile with copies and ignores their results).
///
/// # Safety
/// AVX2 + FMA available; each `w[i]` and `q[j]` points to `nb * 32` readable codes, `ws[i]` holds
/// `nb` scales and `sx4` `4 * nb` (input j's scale of block b at `4b + j`).
#[target_feature(enable = "avx2,fma")]
pub unsafe fn tile_2x4_exact(
    w: [*const i8; 2],
    ws: [&[f32]; 2],
    q: [*const i8; 4],
    sx4: &[f32],
    nb: usize,
) -> [f32; 8] {
    debug_assert!(ws[0].len() >= nb && ws[1].len() >= nb && sx4.len() >= 4 * nb);
    let ones = _mm256_set1_epi16(1);
    let mut acc = _mm256_setzero_ps();
    // SAFETY: block b covers bytes [32b, 32b + 32) of every row, inside their `nb * 32` codes;
    // scale indices stay below `nb` and `4 * nb`.
    unsafe {
        for b in 0..nb {
            let at = b * BLOCK;
            let vw0 = _mm256_loadu_si256(w[0].add(at).cast());
            let vw1 = _mm256_loadu_si256(w[1].add(at).cast());
            // |w| once per weight block; the input takes w's signs (maddubs: u8 × i8).
            let (aw0, aw1) = (_mm256_abs_epi8(vw0), _mm256_abs_epi8(vw1));
            let vq: [__m256i; 4] = std::array::from_fn(|j| _mm256_loadu_si256(q[j].add(at).cast()));
            let p0 = vq.map(|x| {
                _mm256_madd_epi16(_mm256_maddubs_epi16(aw0, _mm256_sign_epi8(x, vw0)), ones)
            });
            let p1 = vq.map(|x| {
                _mm256_madd_epi16(_mm256_maddubs_epi16(aw1, _mm256_sign_epi8(x, vw1)), ones)
            });
            // Per 128-bit half: [input 0, 1, 2, 3] sums of that half's four lanes, row 0 in g0.
            let g0 = _mm256_hadd_epi32(
                _mm256_hadd_epi32(p0[0], p0[1]),
                _mm256_hadd_epi32(p0[2], p0[3]),
            );
            let g1 = _mm256_hadd_epi32(
                _mm256_hadd_epi32(p1[0], p1[1]),
                _mm256_hadd_epi32(p1[2], p1[3]),
            );
            let sums = _mm256_add_epi32(
                _mm256_permute2x128_si256::<0x20>(g0, g1),
                _mm256_permute2x128_si256::<0x31>(g0, g1),
            );
            let sw = _mm256_set_m128(
                _mm_set1_ps(*ws[1].get_unchecked(b)),
                _mm_set1_ps(*ws[0].get_unchecked(b)),
            );
            let d = _mm256_mul_ps(sw, _mm256_broadcast_ps(&*sx4.as_ptr().add(4 * b).cast()));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), d, acc);
        }
        let mut out = [0f32; 8];
        _mm256_storeu_ps(out.as_mut_ptr(), acc);
        out
    }
}

/// Weight rows per packed group of the AVX2 prompt kernel: one per 32-bit lane.
pub const GROUP: usize = 8;

/// Pack eight weight rows for [`packed_tile`]: row i's codes start `offsets[i]` codes after `base`
/// (rows may repeat, to pad a short group), `cols` each. `out` (`8 · cols` values) gets, for each
/// pair of columns k, the sixteen codes widened to i16 at `16k`: rows 0..8, two columns each.
///
/// # Safety
/// AVX2 available; every `base + offsets[i]` points to `cols` readable codes, `cols` is a
/// multiple of 32 and `out` holds `8 · cols` values.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn pack(base: *const i8, offsets: &[usize; GROUP], cols: usize, out: &mut [i16]) {
    debug_assert!(cols % BLOCK == 0 && out.len() == GROUP * cols);
    let o = out.as_mut_ptr();
    // SAFETY: 16 codes from column c of each row lie inside its `cols`; column pairs c / 2 ..
    // c / 2 + 8 of `out` lie inside its `8 · cols` values.
    unsafe {
        for c in (0..cols).step_by(16) {
            // Row i's sixteen codes as i16: eight column pairs, one per 32-bit lane.
            let r: [__m256i; GROUP] = std::array::from_fn(|i| {
                _mm256_cvtepi8_epi16(_mm_loadu_si128(base.add(offsets[i] + c).cast()))
            });
            // An 8 × 8 transpose of 32-bit lanes: lane k of row i to lane i of pair k.
            let a0 = _mm256_unpacklo_epi32(r[0], r[1]);
            let a1 = _mm256_unpackhi_epi32(r[0], r[1]);
            let a2 = _mm256_unpacklo_epi32(r[2], r[3]);
            let a3 = _mm256_unpackhi_epi32(r[2], r[3]);
            let a4 = _mm256_unpacklo_epi32(r[4], r[5]);
            let a5 = _mm256_unpackhi_epi32(r[4], r[5]);
            let a6 = _mm256_unpacklo_epi32(r[6], r[7]);
            let a7 = _mm256_unpackhi_epi32(r[6], r[7]);
            let b0 = _mm256_unpacklo_epi64(a0, a2);
            let b1 = _mm256_unpackhi_epi64(a0, a2);
            let b2 = _mm256_unpacklo_epi64(a1, a3);
            let b3 = _mm256_unpackhi_epi64(a1, a3);
            let b4 = _mm256_unpacklo_epi64(a4, a6);
            let b5 = _mm256_unpackhi_epi64(a4, a6);
            let b6 = _mm256_unpacklo_epi64(a5, a7);
            let b7 = _mm256_unpackhi_epi64(a5, a7);
            // b0..b3 hold pairs (0, 1, 2, 3) of rows 0-3 in the low half and pairs (4..8) in
            // the high half; b4..b7 the same for rows 4-7.
            let pairs = [
                _mm256_permute2x128_si256::<0x20>(b0, b4),
                _mm256_permute2x128_si256::<0x20>(b1, b5),
                _mm256_permute2x128_si256::<0x20>(b2, b6),
                _mm256_permute2x128_si256::<0x20>(b3, b7),
                _mm256_permute2x128_si256::<0x31>(b0, b4),
                _mm256_permute2x128_si256::<0x31>(b1, b5),
                _mm256_permute2x128_si256::<0x31>(b2, b6),
                _mm256_permute2x128_si256::<0x31>(b3, b7),
            ];
            for (k, v) in pairs.into_iter().enumerate() {
                _mm256_storeu_si256(o.add(8 * c + 16 * k).cast(), v);
            }
        }
    }
}

/// The packed group (`pw`: [`pack`]ed codes, `sw`: its scales block-major, `8 · nb`) by `N`
/// inputs widened to i16: input n's codes start at `xq + n · cols`, its scales at `xs + n · nb`;
/// row i's result for input n goes to `out + n · stride + i` for rows `i < valid`. Each row's
/// block sum is exact (`vpmaddwd` of two i16 products per lane, added in i32), then converted and
/// multiply-added with the block's scale product: [`super::kernels::portable_block_fma`]'s bits.
///
/// # Safety
/// AVX2 and FMA available; the pointers cover what is described above for `nb` blocks
/// (`cols = 32 · nb`), `valid <= 8`, and the outputs of the valid rows are writable.
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
pub unsafe fn packed_tile<const N: usize>(
    pw: &[i16],
    sw: &[f32],
    nb: usize,
    xq: *const i16,
    xs: *const f32,
    out: *mut f32,
    stride: usize,
    valid: usize,
) {
    debug_assert!(pw.len() >= nb * BLOCK * GROUP && sw.len() >= nb * GROUP && valid <= GROUP);
    let cols = nb * BLOCK;
    let mut acc = [_mm256_setzero_ps(); N];
    // SAFETY: block b of input n is values [n · cols + 32b, + 32) and scale n · nb + b, inside
    // what the caller described; packed block b is values [256b, 256b + 256) of `pw`.
    unsafe {
        for b in 0..nb {
            let mut sums = [_mm256_setzero_si256(); N];
            let wp = pw.as_ptr().add(b * BLOCK * GROUP);
            for k in 0..BLOCK / 2 {
                let w = _mm256_loadu_si256(wp.add(16 * k).cast());
                for (n, s) in sums.iter_mut().enumerate() {
                    let x = xq
                        .add(n * cols + b * BLOCK + 2 * k)
                        .cast::<i32>()
                        .read_unaligned();
                    *s = _mm256_add_epi32(*s, _mm256_madd_epi16(w, _mm256_set1_epi32(x)));
                }
            }
            let swv = _mm256_loadu_ps(sw.as_ptr().add(b * GROUP));
            for (n, (a, s)) in acc.iter_mut().zip(sums).enumerate() {
                let d = _mm256_mul_ps(swv, _mm256_set1_ps(*xs.add(n * nb + b)));
                *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), d, *a);
            }
        }
        let mask = _mm256_cmpgt_epi32(
            _mm256_set1_epi32(valid as i32),
            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7),
        );
        for (n, a) in acc.into_iter().enumerate() {
            _mm256_maskstore_ps(out.add(n * stride), mask, a);
        }
    }
}

/// [`super::quantize_blocks`] eight lanes at a time, with the same arithmetic (the block's largest
/// magnitude, `x · (1 / d)`, rounding half away from zero, clamping), so the codes and scales are
/// bit-for-bit those of the portable loop.
///
/// # Safety
/// AVX2 + FMA available; `v` and `codes` hold `scales.len() * 32` values.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn quantize_blocks(v: &[f32], codes: &mut [i8], scales: &mut [f32]) {
    let sign = _mm256_set1_ps(-0.0);
    // The largest f32 below 0.5: adding it (with x's sign) and truncating rounds half away from
    // zero without the carry that adding 0.5 itself gives 0.49999997.
    let below_half = _mm256_set1_ps(0.5 - f32::EPSILON / 4.0);
    let (hi, lo) = (_mm256_set1_ps(super::QMAX), _mm256_set1_ps(-super::QMAX));
    let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
    for ((block, out), scale) in v
        .chunks_exact(BLOCK)
        .zip(codes.chunks_exact_mut(BLOCK))
        .zip(scales.iter_mut())
    {
        // SAFETY: every chunk holds 32 values (four vectors of eight).
        let x = unsafe {
            let p = block.as_ptr();
            [
                _mm256_loadu_ps(p),
                _mm256_loadu_ps(p.add(8)),
                _mm256_loadu_ps(p.add(16)),
                _mm256_loadu_ps(p.add(24)),
            ]
        };
        let abs = x.map(|a| _mm256_andnot_ps(sign, a));
        let m = _mm256_max_ps(_mm256_max_ps(abs[0], abs[1]), _mm256_max_ps(abs[2], abs[3]));
        let m = _mm_max_ps(_mm256_castps256_ps128(m), _mm256_extractf128_ps::<1>(m));
        let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
        let m = _mm_max_ss(m, _mm_shuffle_ps::<0b01>(m, m));
        let d = _mm_cvtss_f32(m) / super::QMAX;
        *scale = d;
        let inv = _mm256_set1_ps(if d > 0.0 { 1.0 / d } else { 0.0 });
        let q = x.map(|a| {
            let y = _mm256_mul_ps(a, inv);
            let nudge = _mm256_or_ps(below_half, _mm256_and_ps(sign, y));
            let r = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(_mm256_add_ps(
                y, nudge,
            ));
            _mm256_cvttps_epi32(_mm256_min_ps(_mm256_max_ps(r, lo), hi))
        });
        let packed = _mm256_packs_epi16(
            _mm256_packs_epi32(q[0], q[1]),
            _mm256_packs_epi32(q[2], q[3]),
        );
        let packed = _mm256_permutevar8x32_epi32(packed, order);
        // SAFETY: `out` holds 32 bytes.
        unsafe { _mm256_storeu_si256(out.as_mut_ptr().cast(), packed) };
    }
}

/// [`super::layer::gelu_times_portable`] eight values at a time, with the same operations in the
/// same order (fused multiply-adds where it has them), so the same bits.
///
/// # Safety
/// AVX2 + FMA available; `g`, `u` and `out` have one length.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn gelu_times(g: &[f32], u: &[f32], out: &mut [f32]) {
    use super::layer::{gelu_times_one, EXP_LIMIT, EXP_LN2_HI, EXP_LN2_LO, EXP_POLY};
    let n = out.len();
    let whole = n - n % 8;
    let (a, b) = (
        _mm256_set1_ps(super::layer::GELU_A),
        _mm256_set1_ps(super::layer::GELU_B),
    );
    let (one, half, minus_two) = (
        _mm256_set1_ps(1.0),
        _mm256_set1_ps(0.5),
        _mm256_set1_ps(-2.0),
    );
    let (lo, hi) = (_mm256_set1_ps(-EXP_LIMIT), _mm256_set1_ps(EXP_LIMIT));
    let log2e = _mm256_set1_ps(std::f32::consts::LOG2_E);
    let (ln2_hi, ln2_lo) = (_mm256_set1_ps(-EXP_LN2_HI), _mm256_set1_ps(-EXP_LN2_LO));
    let poly = EXP_POLY.map(|c| _mm256_set1_ps(c));
    let bias = _mm256_set1_epi32(127);
    let mut i = 0;
    while i < whole {
        // SAFETY: i + 8 <= whole <= n, the length of all three slices.
        unsafe {
            let gv = _mm256_loadu_ps(g.as_ptr().add(i));
            let uv = _mm256_loadu_ps(u.as_ptr().add(i));
            let z = _mm256_mul_ps(
                _mm256_add_ps(_mm256_mul_ps(_mm256_mul_ps(gv, b), gv), a),
                gv,
            );
            let x = _mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(minus_two, z), lo), hi);
            let nf = _mm256_floor_ps(_mm256_fmadd_ps(x, log2e, half));
            let r = _mm256_fmadd_ps(nf, ln2_hi, x);
            let r = _mm256_fmadd_ps(nf, ln2_lo, r);
            let mut y = poly[0];
            for &c in &poly[1..] {
                y = _mm256_fmadd_ps(y, r, c);
            }
            let y = _mm256_add_ps(_mm256_fmadd_ps(y, _mm256_mul_ps(r, r), r), one);
            let pow = _mm256_slli_epi32::<23>(_mm256_add_epi32(_mm256_cvttps_epi32(nf), bias));
            let e = _mm256_mul_ps(y, _mm256_castsi256_ps(pow));
            let v = _mm256_mul_ps(_mm256_div_ps(gv, _mm256_add_ps(one, e)), uv);
            _mm256_storeu_ps(out.as_mut_ptr().add(i), v);
        }
        i += 8;
    }
    for j in whole..n {
        out[j] = gelu_times_one(g[j], u[j]);
    }
}

/// binary16 bits to f32 eight at a time (`vcvtph2ps`). For the values [`super::to_f16`] makes
/// (zero and positive normal numbers) this is exactly [`super::from_f16`].
///
/// # Safety
/// AVX2 and F16C available; `src` and `dst` have one length.
#[target_feature(enable = "avx2,f16c")]
pub unsafe fn f16_to_f32(src: &[u16], dst: &mut [f32]) {
    let n = dst.len();
    let whole = n - n % 8;
    let mut i = 0;
    while i < whole {
        // SAFETY: i + 8 <= whole <= n, the length of both slices.
        unsafe {
            let h = _mm_loadu_si128(src.as_ptr().add(i).cast());
            _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        }
        i += 8;
    }
    for j in whole..n {
        dst[j] = super::from_f16(src[j]);
    }
}

/// [`super::layer::pairwise`]'s block sum of the squares of `a` (at most 128 values), its eight
/// running sums in one vector: each square rounded, then added, in numpy's order, so the same bits
/// as squaring into a buffer and summing that with [`super::layer::pairwise_sum`].
///
/// # Safety
/// AVX2 available.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn block_sum_squares(a: &[f32]) -> f32 {
    let n = a.len();
    debug_assert!(n <= 128);
    if n < 8 {
        return a.iter().fold(-0.0f32, |r, &v| r + v * v);
    }
    let p = a.as_ptr();
    let whole = n - n % 8;
    let mut r = [0f32; 8];
    // SAFETY: every load covers values [i, i + 8) with i + 8 <= whole <= n; `r` holds eight f32.
    unsafe {
        let first = _mm256_loadu_ps(p);
        let mut acc = _mm256_mul_ps(first, first);
        let mut i = 8;
        while i < whole {
            let v = _mm256_loadu_ps(p.add(i));
            acc = _mm256_add_ps(acc, _mm256_mul_ps(v, v));
            i += 8;
        }
        _mm256_storeu_ps(r.as_mut_ptr(), acc);
    }
    let mut res = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
    for &v in &a[whole..] {
        res += v * v;
    }
    res
}

/// `out = x / r · scale` value by value (divide, round, multiply), eight at a time.
///
/// # Safety
/// AVX2 available; `x`, `scale` and `out` have one length.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn div_scale(x: &[f32], r: f32, scale: &[f32], out: &mut [f32]) {
    let n = x.len();
    debug_assert!(scale.len() == n && out.len() == n);
    let rv = _mm256_set1_ps(r);
    let whole = n - n % 8;
    let (xp, sp, op) = (x.as_ptr(), scale.as_ptr(), out.as_mut_ptr());
    let mut i = 0;
    // SAFETY: values [i, i + 8) with i + 8 <= whole <= n of three slices of length n.
    unsafe {
        while i < whole {
            let v = _mm256_div_ps(_mm256_loadu_ps(xp.add(i)), rv);
            _mm256_storeu_ps(op.add(i), _mm256_mul_ps(v, _mm256_loadu_ps(sp.add(i))));
            i += 8;
        }
    }
    for ((o, &v), &s) in out[whole..]
        .iter_mut()
        .zip(&x[whole..])
        .zip(&scale[whole..])
    {
        *o = v / r * s;
    }
}

/// `h += x / r · scale` value by value (the normed value rounded before the add), eight at a time.
///
/// # Safety
/// AVX2 available; `h`, `x` and `scale` have one length.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn add_div_scale(h: &mut [f32], x: &[f32], r: f32, scale: &[f32]) {
    let n = x.len();
    debug_assert!(scale.len() == n && h.len() == n);
    let rv = _mm256_set1_ps(r);
    let whole = n - n % 8;
    let (xp, sp, hp) = (x.as_ptr(), scale.as_ptr(), h.as_mut_ptr());
    let mut i = 0;
    // SAFETY: values [i, i + 8) with i + 8 <= whole <= n of three slices of length n.
    unsafe {
        while i < whole {
            let v = _mm256_div_ps(_mm256_loadu_ps(xp.add(i)), rv);
            let y = _mm256_mul_ps(v, _mm256_loadu_ps(sp.add(i)));
            _mm256_storeu_ps(hp.add(i), _mm256_add_ps(_mm256_loadu_ps(hp.add(i)), y));
            i += 8;
        }
    }
    for ((hv, &v), &s) in h[whole..].iter_mut().zip(&x[whole..]).zip(&scale[whole..]) {
        *hv += v / r * s;
    }
}
