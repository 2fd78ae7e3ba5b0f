//! The per-row products of the int8 matrices: one portable kernel (the reference) and the AVX2
//! ones, picked per call by the `avx2` flag the caller detected once.

use super::BLOCK;

#[cfg(target_arch = "x86_64")]
use super::avx2;

/// One weight row against one quantised input row.
#[inline]
pub(super) fn row_dot(wc: &[i8], ws: &[f32], qc: &[i8], qs: &[f32], avx2: bool) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2 {
            // SAFETY: AVX2 and FMA were detected at run time; slices are whole blocks of equal length.
            return unsafe { avx2::row_dot(wc, ws, qc, qs) };
        }
    }
    let _ = avx2;
    portable_row_dot(wc, ws, qc, qs)
}

/// Each block's exact integer sum of `w · x` (at most 32 · 127² in magnitude: exact in f32) with
/// its scale product `s_w · s_x` rounded to f32, block after block.
fn blocks<'a>(
    wc: &'a [i8],
    ws: &'a [f32],
    qc: &'a [i8],
    qs: &'a [f32],
) -> impl Iterator<Item = (f32, f32)> + 'a {
    wc.chunks_exact(BLOCK)
        .zip(qc.chunks_exact(BLOCK))
        .zip(ws.iter().zip(qs))
        .map(|((w, x), (sw, sx))| {
            let dot: i32 = w
                .iter()
                .zip(x)
                .map(|(&a, &b)| i32::from(a) * i32::from(b))
                .sum();
            (dot as f32, sw * sx)
        })
}

/// The prompt products' reference (products of four or more input rows, see `Q8Matrix::matmul`):
/// each block's exact integer sum, times the block's scale product `s_w · s_x` rounded to f32,
/// fused-multiply-added into one accumulator block after block. Every kernel of such products
/// computes exactly this for each (weight row, input row) pair, whatever it groups them by.
pub fn portable_block_fma(wc: &[i8], ws: &[f32], qc: &[i8], qs: &[f32]) -> f32 {
    blocks(wc, ws, qc, qs).fold(0.0, |acc, (dot, d)| dot.mul_add(d, acc))
}

/// Reference kernel (also the fallback): exact integer block sums, scaled in f32.
pub fn portable_row_dot(wc: &[i8], ws: &[f32], qc: &[i8], qs: &[f32]) -> f32 {
    blocks(wc, ws, qc, qs).fold(0.0, |acc, (dot, d)| acc + dot * d)
}
