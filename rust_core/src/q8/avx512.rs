//! The AVX-512 VNNI kernel of the int8 products for several input rows (prompt processing):
//! four weight rows by four input rows per pass, one block of 32 codes per `vpdpbusd` on 256-bit
//! vectors (AVX-512 VL).
//!
//! `vpdpbusd` multiplies unsigned by signed bytes, so the input codes are offset to `x + 128`
//! (unsigned) and the weights stay signed: `Σ (x + 128)·w = Σ x·w + 128 Σ w`. Each lane of a weight
//! row's block starts from `-128 Σ w` over its four codes ([`corrections`], computed once per weight
//! row for all the inputs of a product), so every lane holds the exact integer sum of four products
//! `x · w`: the lanes the AVX2 kernels' `maddubs` + `madd` give. Each block's eight lanes are then
//! converted, and multiply-added with the block's scale product `s_w · s_x` (taken from a table
//! computed sixteen blocks per multiply, as a broadcast operand) into eight-lane accumulators
//! block after block, and summed across lanes: the AVX2 2×4 tile's operations in its order, so the
//! products are its bits and a greedy decode takes the same path on either kind of CPU.
//!
//! Why 256-bit vectors: a 512-bit `vpdpbusd` over two blocks needs its upper half extracted before
//! the second block's multiply-add (the order above), one shuffle per pair the 256-bit form does
//! not need; both forms occupy the same execution ports per byte. Built only where the compiler
//! has these intrinsics as stable API (see `build.rs`), run only where the CPU reports AVX-512 F,
//! BW, VL and VNNI.

// These intrinsics are stable from Rust 1.89, above the crate's rust-version: `build.rs` compiles
// this module only with such a compiler.
#![allow(clippy::incompatible_msrv)]

use super::avx2::hsum4;
use super::BLOCK;
use std::arch::x86_64::*;

/// Lanes (groups of four codes) per block.
pub const LANES_PER_BLOCK: usize = BLOCK / 4;

/// Blocks per pass of [`tile_4x4`]: the sixteen rows of scale products of a pass fit a 4 KiB
/// table on the stack.
const SCALE_PASS: usize = 64;

/// `-128 Σ w` over each group of four codes of `wc`, into `out` (`wc.len() / 4` lanes): the lanes
/// a block's `vpdpbusd` starts from (see the module's doc).
///
/// # Safety
/// AVX-512 F, BW, VL and VNNI available; `wc` holds whole blocks and `out` a quarter as many lanes.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn corrections(wc: &[i8], out: &mut [i32]) {
    debug_assert!(wc.len() % BLOCK == 0 && out.len() * 4 == wc.len());
    // The unsigned byte 128 (the bits of -128) times each code, four to a lane.
    let offset = _mm256_set1_epi8(-128);
    for (w, o) in wc
        .chunks_exact(BLOCK)
        .zip(out.chunks_exact_mut(LANES_PER_BLOCK))
    {
        // SAFETY: each chunk of codes is 32 bytes and each chunk of lanes eight i32.
        unsafe {
            let sums = _mm256_dpbusd_epi32(
                _mm256_setzero_si256(),
                offset,
                _mm256_loadu_si256(w.as_ptr().cast()),
            );
            let neg = _mm256_sub_epi32(_mm256_setzero_si256(), sums);
            _mm256_storeu_si256(o.as_mut_ptr().cast(), neg);
        }
    }
}

/// The exact sums of `x · w` over the eight four-code groups of one block, from the unsigned input
/// `xu = x + 128` and the weights' correction `neg = -128 Σ w` per lane.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
fn block_dots(neg: __m256i, xu: __m256i, w: __m256i) -> __m256i {
    _mm256_dpbusd_epi32(neg, xu, w)
}

/// Four weight rows by four input rows: `out[j][i] = Σ_b s_w[i][b] · s_x[j][b] · Σ x_j · w_i`, in
/// the AVX2 2×4 tile's order (per lane `fma(partial sum, s_w · s_x, acc)` block by block, then its
/// horizontal sum), so the results are its bits.
///
/// # Safety
/// AVX-512 F, BW, VL and VNNI available; each `wc[i]` holds `cols` codes, each `neg[i]` its
/// [`corrections`] (`cols / 4` lanes) and each `ws[i]` `cols / 32` scales; `xu` holds 4 rows of
/// `cols` offset codes and `xs` 4 rows of `cols / 32` scales.
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma")]
#[allow(clippy::needless_range_loop)] // i and j index several arrays of the tile at once
pub unsafe fn tile_4x4(
    wc: [&[i8]; 4],
    neg: [&[i32]; 4],
    ws: [&[f32]; 4],
    xu: &[u8],
    xs: &[f32],
    cols: usize,
) -> [[f32; 4]; 4] {
    let nb = cols / BLOCK;
    debug_assert!(wc.iter().all(|w| w.len() == cols) && ws.iter().all(|s| s.len() == nb));
    debug_assert!(neg.iter().all(|n| n.len() == nb * LANES_PER_BLOCK));
    debug_assert!(xu.len() == 4 * cols && xs.len() == 4 * nb);
    let mut acc = [[_mm256_setzero_ps(); 4]; 4];
    let w = wc.map(<[i8]>::as_ptr);
    let c = neg.map(<[i32]>::as_ptr);
    let x = xu.as_ptr();
    // The sixteen products `ws[i][b] · xs[j][b]` of a block (row 4i + j of the table), sixteen
    // blocks per multiply ahead of the integer work. Left uninitialised: every slot read below is
    // written first (lanes past a pass's last block are written too, and never read).
    let mut table = std::mem::MaybeUninit::<[f32; 16 * SCALE_PASS]>::uninit();
    let d = table.as_mut_ptr().cast::<f32>();
    let mut b0 = 0;
    while b0 < nb {
        let n = SCALE_PASS.min(nb - b0);
        for k in 0..16 {
            let sw = ws[k / 4][b0..b0 + n].as_ptr();
            let sx = xs[(k % 4) * nb + b0..(k % 4) * nb + b0 + n].as_ptr();
            let mut b = 0;
            // SAFETY: row k of the table starts k * SCALE_PASS slots in and b + 16 <= SCALE_PASS;
            // the loads are masked to the lanes below n.
            unsafe {
                while b < n {
                    let mask: __mmask16 = if b + 16 <= n {
                        0xffff
                    } else {
                        (1u16 << (n - b)) - 1
                    };
                    let p = _mm512_mul_ps(
                        _mm512_maskz_loadu_ps(mask, sw.add(b)),
                        _mm512_maskz_loadu_ps(mask, sx.add(b)),
                    );
                    _mm512_storeu_ps(d.add(k * SCALE_PASS + b), p);
                    b += 16;
                }
            }
        }
        let dp = d.cast_const();
        // SAFETY: block b0 + b covers bytes [32(b0 + b), +32) of every weight row and of every
        // input row j (at offset j * cols), and lanes [8(b0 + b), +8) of every correction row;
        // b < n <= SCALE_PASS indexes each of the sixteen table rows.
        unsafe {
            for b in 0..n {
                let at = (b0 + b) * BLOCK;
                let lane = (b0 + b) * LANES_PER_BLOCK;
                let mut wv = [_mm256_setzero_si256(); 4];
                let mut nv = [_mm256_setzero_si256(); 4];
                for i in 0..4 {
                    wv[i] = _mm256_loadu_si256(w[i].add(at).cast());
                    nv[i] = _mm256_loadu_si256(c[i].add(lane).cast());
                }
                for j in 0..4 {
                    let xv = _mm256_loadu_si256(x.add(j * cols + at).cast());
                    for i in 0..4 {
                        let p = _mm256_cvtepi32_ps(block_dots(nv[i], xv, wv[i]));
                        let s = _mm256_broadcast_ss(&*dp.add((4 * i + j) * SCALE_PASS + b));
                        acc[i][j] = _mm256_fmadd_ps(p, s, acc[i][j]);
                    }
                }
            }
        }
        b0 += n;
    }
    // Per input row j, the sums of the four weight rows side by side (one 16-byte store for the
    // caller): `hsum4` does the same additions for each of its four vectors in any slot.
    std::array::from_fn(|j| hsum4(acc[0][j], acc[1][j], acc[2][j], acc[3][j]))
}

/// The integer sum of `x · w` of every block, computed the way [`tile_4x4`] does (offset input,
/// correction, `vpdpbusd`), for the tests to compare with the portable integer products.
///
/// # Safety
/// AVX-512 F, BW, VL and VNNI available; `wc` and `xu` hold the same whole number of blocks.
#[cfg(test)]
#[target_feature(enable = "avx512f,avx512bw,avx512vl,avx512vnni")]
pub unsafe fn block_sums(wc: &[i8], xu: &[u8]) -> Vec<i32> {
    let mut neg = vec![0i32; wc.len() / 4];
    // SAFETY: the caller's features; `neg` holds a lane per four codes.
    unsafe { corrections(wc, &mut neg) };
    let mut out = Vec::with_capacity(wc.len() / BLOCK);
    for ((w, x), n) in wc
        .chunks_exact(BLOCK)
        .zip(xu.chunks_exact(BLOCK))
        .zip(neg.chunks_exact(LANES_PER_BLOCK))
    {
        let mut lanes = [0i32; LANES_PER_BLOCK];
        // SAFETY: each chunk is 32 bytes (eight lanes) long.
        unsafe {
            let sums = block_dots(
                _mm256_loadu_si256(n.as_ptr().cast()),
                _mm256_loadu_si256(x.as_ptr().cast()),
                _mm256_loadu_si256(w.as_ptr().cast()),
            );
            _mm256_storeu_si256(lanes.as_mut_ptr().cast(), sums);
        }
        out.push(lanes.iter().sum());
    }
    out
}
