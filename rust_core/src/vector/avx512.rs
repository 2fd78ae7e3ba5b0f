//! The int8 scan's dot products in AVX-512 (F, BW, VNNI): one `vpdpbusd` per 64 codes of a row.
//!
//! `vpdpbusd` multiplies unsigned by signed bytes. The query's codes and the rows' lie in
//! [-127, 127], so `q · c = |q| · (sign(q) c)`: the query goes in as `|q|` (unsigned) and each row's
//! codes are negated where the query is negative (one masked subtraction, which cannot overflow at
//! ±127). Every lane holds an exact integer partial sum, so the results are the portable kernel's,
//! bit for bit. Against the AVX2 kernel (`vpsignb`, `vpmaddubsw`, `vpmaddwd`, `vpaddd` per 32
//! codes) this is a quarter of the instructions per code, and the kernel asks for the rows 16 KiB
//! ahead, as the f32 scan does. A top-10 over 100k × 384 rows after a 0.3 s pause (the benches'
//! turn; 38 MB of codes, mostly not in cache by then), two threads, medians of 15 on an Intel Xeon
//! (AVX-512 VNNI), load < 0.5: AVX2 kernel 2.0 ms, this kernel 1.7 ms, with the prefetch 1.5 ms
//! (the AVX2 kernel gained nothing from the same prefetch: it is bound by its instructions there).
//!
//! Built where the compiler has these intrinsics as stable API (`cfg(q8_avx512)`, see `build.rs`);
//! run where the CPU reports them (`crate::q8::q8_level`, which `MCP_GEMMA_NO_AVX512` and
//! `MCP_GEMMA_FORCE_SCALAR` turn off).

// Stable from Rust 1.89, above the crate's rust-version: `build.rs` compiles this module only with
// such a compiler.
#![allow(clippy::incompatible_msrv)]

use std::arch::x86_64::*;

/// Rows scored per pass over the query.
const ROWS: usize = 4;
/// How far ahead of the rows being scored the kernel asks for rows (as the f32 scan does).
const PREFETCH: usize = 16 << 10;

/// `out[r] = <query, codes[r]>` for `R` rows of `dim` codes starting at `rows`.
///
/// # Safety
/// AVX-512 F, BW and VNNI available; `q` points to `dim` readable bytes and `rows` to `R · dim`.
#[inline]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn dot_block<const R: usize>(q: *const i8, rows: *const i8, dim: usize) -> [i32; R] {
    let zero = _mm512_setzero_si512();
    let mut acc = [zero; R];
    let mut i = 0;
    // A prefetch past the end of the rows is harmless: it never faults, hence `wrapping_add`.
    let mut ahead = rows.cast::<u8>().wrapping_add(PREFETCH);
    while i < dim {
        // the R rows are one run of R · dim bytes; a step covers R · 64 of them
        for line in 0..R {
            _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(line * 64).cast());
        }
        ahead = ahead.wrapping_add(R * 64);
        // whole 64-code chunks, then one masked chunk for the tail (its missing codes read as 0)
        let left = dim - i;
        let mask: __mmask64 = if left >= 64 { !0 } else { (1u64 << left) - 1 };
        // SAFETY: the mask covers only offsets below dim, inside the query and each row.
        let vq = unsafe { _mm512_maskz_loadu_epi8(mask, q.add(i)) };
        let negative = _mm512_movepi8_mask(vq);
        let magnitude = _mm512_abs_epi8(vq);
        for (r, a) in acc.iter_mut().enumerate() {
            // SAFETY: as above, for row r.
            let c = unsafe { _mm512_maskz_loadu_epi8(mask, rows.add(r * dim + i)) };
            let signed = _mm512_mask_sub_epi8(c, negative, zero, c);
            *a = _mm512_dpbusd_epi32(*a, magnitude, signed);
        }
        i += 64;
    }
    acc.map(|a| _mm512_reduce_add_epi32(a))
}

/// `out[r] = <query, codes[r]>` over int8 rows of `dim` codes (exact integer arithmetic).
///
/// # Safety
/// AVX-512 F, BW and VNNI available; `query.len() == dim` and `codes.len() == out.len() * dim`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub unsafe fn dot_rows_i8(query: &[i8], codes: &[i8], dim: usize, out: &mut [i32]) {
    let (q, c) = (query.as_ptr(), codes.as_ptr());
    let mut blocks = out.chunks_exact_mut(ROWS);
    let mut at = 0;
    for o in &mut blocks {
        // SAFETY: rows at..at + ROWS lie inside `codes` (codes.len() == out.len() * dim).
        o.copy_from_slice(&unsafe { dot_block::<ROWS>(q, c.add(at * dim), dim) });
        at += ROWS;
    }
    for o in blocks.into_remainder() {
        // SAFETY: row `at` lies inside `codes`.
        *o = unsafe { dot_block::<1>(q, c.add(at * dim), dim) }[0];
        at += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::quant::random_codes as codes;
    use crate::vector::simd::portable;

    #[test]
    fn gives_the_portable_kernels_integers() {
        if !crate::q8::avx512_vnni_available() {
            eprintln!("skipped: no AVX-512 VNNI here");
            return;
        }
        let mut s = 5;
        for dim in [1, 7, 63, 64, 65, 100, 128, 383, 384, 385, 1024] {
            for n in [1, 3, 4, 5, 9] {
                let q = codes(&mut s, dim);
                let rows = codes(&mut s, n * dim);
                let mut got = vec![0; n];
                // SAFETY: AVX-512 F/BW/VNNI detected above; the lengths match.
                unsafe { dot_rows_i8(&q, &rows, dim, &mut got) };
                let mut want = vec![0; n];
                portable::dot_rows_i8(&q, &rows, dim, &mut want);
                assert_eq!(got, want, "dim {dim}, {n} rows");
            }
        }
        // the extremes: every product ±127², the largest sums a 4096-code row can reach
        for (a, b) in [(127i8, 127i8), (127, -127), (-127, -127), (-127, 127)] {
            let dim = 4096;
            let q = vec![a; dim];
            let rows = vec![b; 5 * dim];
            let mut got = vec![0; 5];
            // SAFETY: as above.
            unsafe { dot_rows_i8(&q, &rows, dim, &mut got) };
            assert_eq!(got, vec![i32::from(a) * i32::from(b) * dim as i32; 5]);
        }
    }
}
