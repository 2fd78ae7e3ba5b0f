//! The AVX2 + FMA + F16C kernels of the binary16 products (x86-64; chosen at run time).

use super::NR;
use std::arch::x86_64::*;

/// How far ahead of the column in hand the kernel asks for panel weights (`prefetcht0`, in binary16
/// values: 4 KiB, one line per two columns). A query's forward pass reads MiniLM's 21 MB of binary16
/// weights once, mostly from memory; alternated in one process (2026-12-02, 10 × 20 queries each,
/// quiet but noisy host) a query's forward pass took a median 6.7 ms with it and 7.5 ms without
/// when the weights were partly cached, and the same (9.4–9.5 ms) after a 64 MB sweep evicted them.
const PREFETCH: usize = 2048;

/// `out[t][j] = Σ_k x[t, k] · panel[k, j]` for the `R` rows of `x` (each `cols` long) and the
/// `NR` outputs of one packed panel (`cols × NR` binary16 values, output-minor).
///
/// Each output is one lane of one accumulator, summed over `k` in order with FMA, so its bits do
/// not depend on `R` or on the other rows; [`super::portable_panel`] computes the same bits. Per `k`
/// two weight vectors are widened straight from memory and each feeds `R` FMAs; with `R = 6`
/// twelve accumulators keep both FMA pipes busy and no horizontal sum is needed.
///
/// # Safety
/// AVX2, FMA and F16C available; `panel.len() >= cols * NR`, `x.len() >= R * cols`.
#[target_feature(enable = "avx2,fma,f16c")]
pub unsafe fn panel<const R: usize>(panel: &[u16], x: &[f32], cols: usize) -> [[f32; NR]; R] {
    debug_assert!(panel.len() >= cols * NR && x.len() >= R * cols);
    let (wp, xp) = (panel.as_ptr(), x.as_ptr());
    let mut acc = [[_mm256_setzero_ps(); 2]; R];
    // SAFETY: k < cols, so the loads read inside the panel (k · NR + 16 <= cols · NR) and inside
    // row t of x (t < R).
    unsafe {
        let step = |k: usize, acc: &mut [[__m256; 2]; R]| {
            let w0 = _mm256_cvtph_ps(_mm_loadu_si128(wp.add(k * NR).cast()));
            let w1 = _mm256_cvtph_ps(_mm_loadu_si128(wp.add(k * NR + 8).cast()));
            for (t, a) in acc.iter_mut().enumerate() {
                let xb = _mm256_set1_ps(*xp.add(t * cols + k));
                a[0] = _mm256_fmadd_ps(w0, xb, a[0]);
                a[1] = _mm256_fmadd_ps(w1, xb, a[1]);
            }
        };
        let mut k = 0;
        while k + 2 <= cols {
            // past the end of the panel this asks for the next one (a task's panels are
            // contiguous) or for nothing: a prefetch never faults, hence `wrapping_add`
            _mm_prefetch::<_MM_HINT_T0>(wp.wrapping_add(k * NR + PREFETCH).cast());
            step(k, &mut acc);
            step(k + 1, &mut acc);
            k += 2;
        }
        if k < cols {
            step(k, &mut acc);
        }
    }
    let mut out = [[0f32; NR]; R];
    for (o, a) in out.iter_mut().zip(acc) {
        // SAFETY: each row of `out` holds NR = 16 floats, two unaligned stores of eight.
        unsafe {
            _mm256_storeu_ps(o.as_mut_ptr(), a[0]);
            _mm256_storeu_ps(o.as_mut_ptr().add(8), a[1]);
        }
    }
    out
}
