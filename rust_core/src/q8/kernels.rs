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

/// One weight row against four consecutive quantised input rows (`qc`: 4 × cols, `qs`: 4 × blocks).
#[inline]
pub(super) fn row_dot4(wc: &[i8], ws: &[f32], qc: &[i8], qs: &[f32], avx2: bool) -> [f32; 4] {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2 {
            // SAFETY: AVX2 and FMA were detected at run time; `qc` holds 4 rows of `wc.len()`
            // codes and `qs` 4 rows of `ws.len()` scales.
            return unsafe { avx2::row_dot4(wc, ws, qc, qs) };
        }
    }
    let _ = avx2;
    let (cols, nb) = (wc.len(), ws.len());
    std::array::from_fn(|j| {
        portable_row_dot(
            wc,
            ws,
            &qc[j * cols..(j + 1) * cols],
            &qs[j * nb..(j + 1) * nb],
        )
    })
}

/// Two weight rows against four consecutive quantised input rows: `[row 0 sums, row 1 sums]`.
#[inline]
pub(super) fn tile_2x4(
    wc: [&[i8]; 2],
    ws: [&[f32]; 2],
    qc: &[i8],
    qs: &[f32],
    avx2: bool,
) -> [[f32; 4]; 2] {
    #[cfg(target_arch = "x86_64")]
    {
        if avx2 {
            // SAFETY: AVX2 and FMA were detected at run time; both weight rows hold `cols` codes
            // and `nb` scales, `qc` 4 rows of `cols` codes and `qs` 4 rows of `nb` scales.
            return unsafe { avx2::tile_2x4(wc, ws, qc, qs) };
        }
    }
    let _ = avx2;
    [
        row_dot4(wc[0], ws[0], qc, qs, false),
        row_dot4(wc[1], ws[1], qc, qs, false),
    ]
}

/// Reference kernel (also the fallback): exact integer block sums, scaled in f32.
pub fn portable_row_dot(wc: &[i8], ws: &[f32], qc: &[i8], qs: &[f32]) -> f32 {
    let mut acc = 0.0f32;
    for (((w, x), sw), sx) in wc
        .chunks_exact(BLOCK)
        .zip(qc.chunks_exact(BLOCK))
        .zip(ws)
        .zip(qs)
    {
        let dot: i32 = w
            .iter()
            .zip(x)
            .map(|(&a, &b)| i32::from(a) * i32::from(b))
            .sum();
        acc += dot as f32 * (sw * sx);
    }
    acc
}
