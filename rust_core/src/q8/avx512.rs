//! The AVX-512 VNNI kernel of the int8 products for several input rows (prompt processing):
//! four weight rows by four input rows per pass, 64 codes (two blocks) per instruction.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes, so the input codes are offset to `x + 128`
//! (unsigned) and the weights stay signed: `Σ (x + 128)·w = Σ x·w + 128 Σ w`. The accumulator of
//! each weight row starts at `-128 Σ w` (per 4-byte group, itself a `vpdpbusd` of 128s by `w`), so
//! every lane holds an exact integer partial sum of `x · w`; a block's eight lanes are then scaled by
//! `s_w · s_x` in f32 and added into eight-lane accumulators one block after the other, and summed
//! across lanes, exactly as the AVX2 2×4 tile does: the products are the AVX2 kernels' bits, so a
//! greedy decode takes the same path on either kind of CPU. Built only where the compiler has these
//! intrinsics as stable API (see `build.rs`), run only where the CPU reports AVX-512 F, BW and VNNI.

// These intrinsics are stable from Rust 1.89, above the crate's rust-version: `build.rs` compiles
// this module only with such a compiler.
#![allow(clippy::incompatible_msrv)]

use super::avx2::hsum4;
use super::BLOCK;
use std::arch::x86_64::*;

/// Lanes of a 512-bit vector that one block of 32 codes spans after `vpdpbusd`.
pub const LANES_PER_BLOCK: usize = BLOCK / 4;

/// The exact partial sums of `x · w` over two blocks (16 lanes of four products each), from the
/// unsigned input `xu = x + 128` and the weights' correction `neg = -128 Σ w` per lane.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn pair_dots(neg: __m512i, xu: __m512i, w: __m512i) -> __m512i {
    _mm512_dpbusd_epi32(neg, xu, w)
}

/// `-128 Σ w` per group of four weights (the lanes `pair_dots` starts from).
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
fn correction(w: __m512i) -> __m512i {
    let sums = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(-128), w);
    _mm512_sub_epi32(_mm512_setzero_si512(), sums)
}

/// The lower eight lanes of `v` (the first block of a pair).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn low(v: __m512) -> __m256 {
    _mm512_castps512_ps256(v)
}

/// The upper eight lanes of `v` (the second block of a pair).
#[inline]
#[target_feature(enable = "avx512f,avx2,fma")]
fn high(v: __m512) -> __m256 {
    _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(v)))
}

/// Four weight rows by four input rows: `out[i][j] = Σ_b s_w[i][b] · s_x[j][b] · Σ x_j · w_i`, in
/// the AVX2 2×4 tile's order (per lane `fma(partial sum, s_w · s_x, acc)` block by block, then its
/// horizontal sum), so the results are its bits.
///
/// # Safety
/// AVX-512 F, BW and VNNI available; each `wc[i]` holds `cols` codes and each `ws[i]` `cols / 32`
/// scales; `xu` holds 4 rows of `cols` offset codes; `sx` holds 4 rows of `cols / 4` scales (each
/// block's scale repeated over its 8 lanes, see [`LANES_PER_BLOCK`]).
#[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
#[allow(clippy::needless_range_loop)] // i and j index several arrays of the tile at once
pub unsafe fn tile_4x4(
    wc: [&[i8]; 4],
    ws: [&[f32]; 4],
    xu: &[u8],
    sx: &[f32],
    cols: usize,
) -> [[f32; 4]; 4] {
    let nb = cols / BLOCK;
    let lanes = nb * LANES_PER_BLOCK;
    debug_assert!(wc.iter().all(|w| w.len() == cols) && ws.iter().all(|s| s.len() == nb));
    debug_assert!(xu.len() == 4 * cols && sx.len() == 4 * lanes);
    let mut acc = [[_mm256_setzero_ps(); 4]; 4];
    let w = wc.map(<[i8]>::as_ptr);
    let s = ws.map(<[f32]>::as_ptr);
    let (x, sxp) = (xu.as_ptr(), sx.as_ptr());
    let mut b = 0;
    // SAFETY: blocks b and b + 1 (< nb) cover bytes [32b, 32b + 64) of every weight row and of every
    // input row j (at offset j * cols), lanes [8b, 8b + 16) of every scale row j (at j * lanes) and
    // scales b, b + 1 of every weight row: all inside the slices checked above.
    unsafe {
        while b + 2 <= nb {
            let mut wv = [_mm512_setzero_si512(); 4];
            let mut neg = [_mm512_setzero_si512(); 4];
            let mut swv = [_mm512_setzero_ps(); 4];
            for i in 0..4 {
                wv[i] = _mm512_loadu_si512(w[i].add(b * BLOCK).cast());
                neg[i] = correction(wv[i]);
                swv[i] = _mm512_mask_blend_ps(
                    0xff00,
                    _mm512_set1_ps(*s[i].add(b)),
                    _mm512_set1_ps(*s[i].add(b + 1)),
                );
            }
            for j in 0..4 {
                let xv = _mm512_loadu_si512(x.add(j * cols + b * BLOCK).cast());
                let sxv = _mm512_loadu_ps(sxp.add(j * lanes + b * LANES_PER_BLOCK));
                for i in 0..4 {
                    let d = _mm512_cvtepi32_ps(pair_dots(neg[i], xv, wv[i]));
                    let scale = _mm512_mul_ps(swv[i], sxv);
                    acc[i][j] = _mm256_fmadd_ps(low(d), low(scale), acc[i][j]);
                    acc[i][j] = _mm256_fmadd_ps(high(d), high(scale), acc[i][j]);
                }
            }
            b += 2;
        }
        if b < nb {
            // One block left: the upper half of every vector is zero (codes and correction alike).
            let (bytes, half) = (0xffff_ffff_u64, 0x00ff_u16);
            for i in 0..4 {
                let wv = _mm512_maskz_loadu_epi8(bytes, w[i].add(b * BLOCK).cast());
                let neg = correction(wv);
                let swv = _mm512_set1_ps(*s[i].add(b));
                for j in 0..4 {
                    let xv = _mm512_maskz_loadu_epi8(bytes, x.add(j * cols + b * BLOCK).cast());
                    let sxv = _mm512_maskz_loadu_ps(half, sxp.add(j * lanes + b * LANES_PER_BLOCK));
                    let d = _mm512_cvtepi32_ps(pair_dots(neg, xv, wv));
                    let scale = _mm512_mul_ps(swv, sxv);
                    acc[i][j] = _mm256_fmadd_ps(low(d), low(scale), acc[i][j]);
                }
            }
        }
    }
    acc.map(|[a, b, c, d]| hsum4(a, b, c, d))
}

/// The integer sum of `x · w` of every block, computed the way [`tile_4x4`] does (offset input,
/// correction, `vpdpbusd`), for the tests to compare with the portable integer products.
///
/// # Safety
/// AVX-512 F, BW and VNNI available; `wc` and `xu` hold the same whole number of blocks, and that
/// number is even.
#[cfg(test)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn block_sums(wc: &[i8], xu: &[u8]) -> Vec<i32> {
    let mut out = Vec::with_capacity(wc.len() / BLOCK);
    for (w, x) in wc.chunks_exact(2 * BLOCK).zip(xu.chunks_exact(2 * BLOCK)) {
        // SAFETY: each chunk is 64 bytes long.
        let (wv, xv) = unsafe {
            (
                _mm512_loadu_si512(w.as_ptr().cast()),
                _mm512_loadu_si512(x.as_ptr().cast()),
            )
        };
        let mut lanes = [0i32; 16];
        // SAFETY: `lanes` holds sixteen i32.
        unsafe {
            _mm512_storeu_si512(lanes.as_mut_ptr().cast(), pair_dots(correction(wv), xv, wv))
        };
        out.push(lanes[..8].iter().sum());
        out.push(lanes[8..].iter().sum());
    }
    out
}
