//! int8 similarity kernels for graph traversal: one query against one row or against four rows that
//! lie anywhere in memory (graph neighbours are not contiguous, unlike the rows `vector::simd` scans).
//!
//! Codes stay within [-127, 127] (see `vector::quant`), so the AVX2 `maddubs` path cannot saturate.

use crate::vector::simd::{self, SimdLevel};

/// Integer dot product of two equal-length code rows.
#[inline]
pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    debug_assert_eq!(a.len(), b.len());
    #[cfg(target_arch = "x86_64")]
    if simd::simd_level() == SimdLevel::Avx2 {
        // SAFETY: AVX2 was detected on this CPU; both slices hold a.len() codes.
        return unsafe { avx2::dot1(a.as_ptr(), b.as_ptr(), a.len()) };
    }
    simd::portable::dot_i8(a, b)
}

/// `query` against four rows of the same length; the query is loaded once per step.
#[inline]
pub fn dot_i8_x4(query: &[i8], rows: [&[i8]; 4]) -> [i32; 4] {
    debug_assert!(rows.iter().all(|r| r.len() == query.len()));
    #[cfg(target_arch = "x86_64")]
    if simd::simd_level() == SimdLevel::Avx2 {
        let ptrs = rows.map(<[i8]>::as_ptr);
        // SAFETY: AVX2 was detected on this CPU; every row holds query.len() codes.
        return unsafe { avx2::dot4(query.as_ptr(), ptrs, query.len()) };
    }
    rows.map(|r| simd::portable::dot_i8(query, r))
}

/// Asks the CPU to start loading `row` into cache (a hint: never faults, never changes results).
#[inline]
pub fn prefetch(row: &[i8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        for line in row.chunks(64) {
            // SAFETY: SSE is part of the x86-64 baseline; a prefetch of any address is harmless and
            // this one points into `row`.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr()) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = row;
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use crate::vector::simd::avx2::hsum_i32;
    use std::arch::x86_64::*;

    /// |q| · sign(r, q) summed in 16-bit pairs, widened to 32-bit lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn step(aq: __m256i, vq: __m256i, vr: __m256i, ones: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(aq, _mm256_sign_epi8(vr, vq)), ones)
    }

    /// # Safety
    /// `q` and `r` point to `dim` readable bytes; AVX2 available.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot1(q: *const i8, r: *const i8, dim: usize) -> i32 {
        let ones = _mm256_set1_epi16(1);
        let (mut a0, mut a1) = (_mm256_setzero_si256(), _mm256_setzero_si256());
        let mut i = 0;
        // SAFETY: every offset read is < dim.
        unsafe {
            while i + 64 <= dim {
                let vq = _mm256_loadu_si256(q.add(i).cast());
                let vr = _mm256_loadu_si256(r.add(i).cast());
                a0 = _mm256_add_epi32(a0, step(_mm256_abs_epi8(vq), vq, vr, ones));
                let vq = _mm256_loadu_si256(q.add(i + 32).cast());
                let vr = _mm256_loadu_si256(r.add(i + 32).cast());
                a1 = _mm256_add_epi32(a1, step(_mm256_abs_epi8(vq), vq, vr, ones));
                i += 64;
            }
            if i + 32 <= dim {
                let vq = _mm256_loadu_si256(q.add(i).cast());
                let vr = _mm256_loadu_si256(r.add(i).cast());
                a0 = _mm256_add_epi32(a0, step(_mm256_abs_epi8(vq), vq, vr, ones));
                i += 32;
            }
            let mut s = hsum_i32(_mm256_add_epi32(a0, a1));
            while i < dim {
                s += i32::from(*q.add(i)) * i32::from(*r.add(i));
                i += 1;
            }
            s
        }
    }

    /// # Safety
    /// `q` and each of `r` point to `dim` readable bytes; AVX2 available.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot4(q: *const i8, r: [*const i8; 4], dim: usize) -> [i32; 4] {
        let ones = _mm256_set1_epi16(1);
        let z = _mm256_setzero_si256();
        let (mut a0, mut a1, mut a2, mut a3) = (z, z, z, z);
        let mut i = 0;
        // SAFETY: every offset read is < dim in the query and in each row.
        unsafe {
            while i + 32 <= dim {
                let vq = _mm256_loadu_si256(q.add(i).cast());
                let aq = _mm256_abs_epi8(vq);
                a0 = _mm256_add_epi32(
                    a0,
                    step(aq, vq, _mm256_loadu_si256(r[0].add(i).cast()), ones),
                );
                a1 = _mm256_add_epi32(
                    a1,
                    step(aq, vq, _mm256_loadu_si256(r[1].add(i).cast()), ones),
                );
                a2 = _mm256_add_epi32(
                    a2,
                    step(aq, vq, _mm256_loadu_si256(r[2].add(i).cast()), ones),
                );
                a3 = _mm256_add_epi32(
                    a3,
                    step(aq, vq, _mm256_loadu_si256(r[3].add(i).cast()), ones),
                );
                i += 32;
            }
            let mut out = [hsum_i32(a0), hsum_i32(a1), hsum_i32(a2), hsum_i32(a3)];
            while i < dim {
                for (o, row) in out.iter_mut().zip(r) {
                    *o += i32::from(*q.add(i)) * i32::from(*row.add(i));
                }
                i += 1;
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::quant::random_codes as codes;

    #[test]
    fn kernels_match_the_portable_dot() {
        let mut s = 5;
        for dim in [1, 7, 31, 32, 33, 63, 64, 65, 100, 384, 385] {
            let q = codes(&mut s, dim);
            let rows: Vec<Vec<i8>> = (0..4).map(|_| codes(&mut s, dim)).collect();
            let want: Vec<i32> = rows.iter().map(|r| simd::portable::dot_i8(&q, r)).collect();
            assert_eq!(dot_i8(&q, &rows[0]), want[0], "dim {dim}");
            let got = dot_i8_x4(&q, [&rows[0], &rows[1], &rows[2], &rows[3]]);
            assert_eq!(got.to_vec(), want, "dim {dim}");
            prefetch(&rows[1]);
        }
    }
}
