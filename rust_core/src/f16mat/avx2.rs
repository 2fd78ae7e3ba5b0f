//! The AVX2 + FMA + F16C kernels of the binary16 products (x86-64; chosen at run time).

use super::TILE_ROWS;
use crate::vector::simd::avx2::hsum;
use std::arch::x86_64::*;

/// `dst[i] = f32(src[i])`.
///
/// # Safety
/// AVX2 and F16C available; `src.len() == dst.len()`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn widen(src: &[u16], dst: &mut [f32]) {
    debug_assert_eq!(src.len(), dst.len());
    let n = src.len();
    let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
    let mut i = 0;
    // SAFETY: i + 8 <= n, inside both slices.
    unsafe {
        while i + 8 <= n {
            let h = _mm_loadu_si128(s.add(i).cast());
            _mm256_storeu_ps(d.add(i), _mm256_cvtph_ps(h));
            i += 8;
        }
    }
    for j in i..n {
        dst[j] = super::f16_to_f32(src[j]);
    }
}

/// The dot products of `x` with the four rows of `w` (each `x.len()` long), summed in the same
/// order as [`dot4x3`], so a row's product does not depend on how many inputs came with it.
///
/// # Safety
/// AVX2 + FMA available; `w.len() >= 4 * x.len()`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot4(w: &[f32], x: &[f32]) -> [f32; TILE_ROWS] {
    let cols = x.len();
    debug_assert!(w.len() >= TILE_ROWS * cols);
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = [_mm256_setzero_ps(); TILE_ROWS];
    let mut c = 0;
    // SAFETY: c + 8 <= cols, so every load reads inside x and inside row j of w.
    unsafe {
        while c + 8 <= cols {
            let xv = _mm256_loadu_ps(xp.add(c));
            for (j, a) in acc.iter_mut().enumerate() {
                *a = _mm256_fmadd_ps(_mm256_loadu_ps(wp.add(j * cols + c)), xv, *a);
            }
            c += 8;
        }
    }
    let mut out = [0f32; TILE_ROWS];
    for (j, (o, a)) in out.iter_mut().zip(acc).enumerate() {
        let wj = &w[j * cols..(j + 1) * cols];
        *o = hsum(a) + (c..cols).map(|k| wj[k] * x[k]).sum::<f32>();
    }
    out
}

/// The dot products of three inputs with the four rows of `w` (each `cols` long): `out[t][j]`.
/// Each loaded weight vector feeds three FMAs and each input vector four.
///
/// # Safety
/// AVX2 + FMA available; `w.len() >= 4 * cols`, `x.len() >= 3 * cols`.
#[target_feature(enable = "avx2,fma")]
pub unsafe fn dot4x3(w: &[f32], x: &[f32], cols: usize) -> [[f32; TILE_ROWS]; 3] {
    debug_assert!(w.len() >= TILE_ROWS * cols && x.len() >= 3 * cols);
    let (wp, xp) = (w.as_ptr(), x.as_ptr());
    let mut acc = [[_mm256_setzero_ps(); 3]; TILE_ROWS]; // acc[j][t]
    let mut c = 0;
    // SAFETY: c + 8 <= cols, so every load reads inside row j of w and row t of x.
    unsafe {
        while c + 8 <= cols {
            let xs = [
                _mm256_loadu_ps(xp.add(c)),
                _mm256_loadu_ps(xp.add(cols + c)),
                _mm256_loadu_ps(xp.add(2 * cols + c)),
            ];
            for (j, row_acc) in acc.iter_mut().enumerate() {
                let wv = _mm256_loadu_ps(wp.add(j * cols + c));
                for (a, xv) in row_acc.iter_mut().zip(xs) {
                    *a = _mm256_fmadd_ps(wv, xv, *a);
                }
            }
            c += 8;
        }
    }
    let mut out = [[0f32; TILE_ROWS]; 3];
    for (j, row_acc) in acc.iter().enumerate() {
        let wj = &w[j * cols..(j + 1) * cols];
        for (t, a) in row_acc.iter().enumerate() {
            let xt = &x[t * cols..(t + 1) * cols];
            out[t][j] = hsum(*a) + (c..cols).map(|k| wj[k] * xt[k]).sum::<f32>();
        }
    }
    out
}
