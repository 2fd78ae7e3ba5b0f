//! Dot-product kernels, selected once at run time: AVX2+FMA on x86-64, else a portable kernel written
//! with independent lanes so LLVM vectorises it (SSE2 on x86-64, NEON on aarch64, where NEON is baseline).
//!
//! Setting `MCP_GEMMA_FORCE_SCALAR` in the environment selects the portable kernel (used by tests to
//! cover the path CPUs without AVX2 take).
//!
//! The kernels score whole blocks of rows (one dispatch per block, not per row) and score several rows
//! per pass over the query so each query load feeds several FMAs.

use std::sync::OnceLock;

/// The instruction set the kernels run with on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimdLevel {
    /// AVX2 + FMA (x86-64).
    Avx2,
    /// NEON (aarch64 baseline), through the portable kernel.
    Neon,
    /// Portable kernel without a wider instruction set.
    Scalar,
}

impl SimdLevel {
    /// The name Python sees (`simd_level()`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx2 => "avx2",
            Self::Neon => "neon",
            Self::Scalar => "scalar",
        }
    }
}

/// The level detected on this CPU (cached after the first call).
pub fn simd_level() -> SimdLevel {
    static LEVEL: OnceLock<SimdLevel> = OnceLock::new();
    *LEVEL.get_or_init(detect)
}

fn detect() -> SimdLevel {
    #[cfg(target_arch = "x86_64")]
    {
        if std::env::var_os("MCP_GEMMA_FORCE_SCALAR").is_none()
            && is_x86_feature_detected!("avx2")
            && is_x86_feature_detected!("fma")
        {
            return SimdLevel::Avx2;
        }
    }
    #[cfg(target_arch = "aarch64")]
    {
        return SimdLevel::Neon;
    }
    #[allow(unreachable_code)]
    SimdLevel::Scalar
}

/// `out[r] = <query, rows[r]>` for every row of `rows` (row-major, `dim` columns).
pub fn dot_rows(query: &[f32], rows: &[f32], dim: usize, out: &mut [f32]) {
    debug_assert_eq!(query.len(), dim);
    debug_assert_eq!(rows.len(), out.len() * dim);
    #[cfg(target_arch = "x86_64")]
    if simd_level() == SimdLevel::Avx2 {
        // SAFETY: AVX2 and FMA were detected on this CPU; slice lengths are checked above.
        unsafe { avx2::dot_rows(query, rows, dim, out) };
        return;
    }
    portable::dot_rows(query, rows, dim, out);
}

/// Dot product of two equal-length vectors.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut out = [0.0f32];
    dot_rows(a, b, a.len(), &mut out);
    out[0]
}

/// `out[r] = |rows[r]|²`.
pub fn sq_norms(rows: &[f32], dim: usize, out: &mut [f32]) {
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(dim.max(1))) {
        *o = dot(row, row);
    }
}

/// `out[q * nrows + r] = <queries[q], rows[r]>` for a block of queries and a block of rows.
pub fn dot_block(queries: &[f32], rows: &[f32], dim: usize, out: &mut [f32]) {
    let nq = queries.len() / dim.max(1);
    let nr = rows.len() / dim.max(1);
    debug_assert_eq!(out.len(), nq * nr);
    #[cfg(target_arch = "x86_64")]
    if simd_level() == SimdLevel::Avx2 {
        // SAFETY: AVX2 and FMA were detected on this CPU; shapes are derived from the slices.
        unsafe { avx2::dot_block(queries, rows, dim, nq, nr, out) };
        return;
    }
    for (q, o) in queries
        .chunks_exact(dim.max(1))
        .zip(out.chunks_exact_mut(nr.max(1)))
    {
        portable::dot_rows(q, rows, dim, o);
    }
}

/// `out[r] = <query, codes[r]>` over int8 rows (exact integer arithmetic).
pub fn dot_rows_i8(query: &[i8], codes: &[i8], dim: usize, out: &mut [i32]) {
    // checked in release builds too: the SIMD kernels read through raw pointers
    assert_eq!(query.len(), dim, "query length");
    assert_eq!(codes.len(), out.len() * dim, "codes length");
    #[cfg(all(target_arch = "x86_64", q8_avx512))]
    if crate::q8::q8_level() == crate::q8::Q8Level::Avx512Vnni {
        // SAFETY: the CPU reports AVX-512 F, BW and VNNI (q8_level checked them); slice lengths
        // are checked above.
        unsafe { super::avx512::dot_rows_i8(query, codes, dim, out) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if simd_level() == SimdLevel::Avx2 {
        // SAFETY: AVX2 was detected on this CPU; slice lengths are checked above.
        unsafe { avx2::dot_rows_i8(query, codes, dim, out) };
        return;
    }
    portable::dot_rows_i8(query, codes, dim, out);
}

/// Reference implementations, also the fallback. Independent lanes let LLVM vectorise without
/// reassociating a single float sum.
pub mod portable {
    const LANES: usize = 16;

    /// Plain dot product with 16 independent partial sums.
    pub fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0.0f32; LANES];
        let ca = a.chunks_exact(LANES);
        let cb = b.chunks_exact(LANES);
        let tail: f32 = ca
            .remainder()
            .iter()
            .zip(cb.remainder())
            .map(|(x, y)| x * y)
            .sum();
        for (xa, xb) in ca.zip(cb) {
            for l in 0..LANES {
                acc[l] = xa[l].mul_add(xb[l], acc[l]);
            }
        }
        acc.iter().sum::<f32>() + tail
    }

    /// Block version of [`dot`].
    pub fn dot_rows(query: &[f32], rows: &[f32], dim: usize, out: &mut [f32]) {
        for (o, row) in out.iter_mut().zip(rows.chunks_exact(dim.max(1))) {
            *o = dot(query, row);
        }
    }

    /// Integer dot product.
    pub fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| i32::from(x) * i32::from(y))
            .sum()
    }

    /// Block version of [`dot_i8`].
    pub fn dot_rows_i8(query: &[i8], codes: &[i8], dim: usize, out: &mut [i32]) {
        for (o, row) in out.iter_mut().zip(codes.chunks_exact(dim.max(1))) {
            *o = dot_i8(query, row);
        }
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod avx2 {
    use std::arch::x86_64::*;

    /// Sum of the eight lanes (shared by the int8 kernels in `q8` and `ann`).
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    pub(crate) fn hsum(v: __m256) -> f32 {
        let lo = _mm256_castps256_ps128(v);
        let hi = _mm256_extractf128_ps::<1>(v);
        let s = _mm_add_ps(lo, hi);
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
        _mm_cvtss_f32(s)
    }

    /// Sum of the eight 32-bit lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(crate) fn hsum_i32(v: __m256i) -> i32 {
        let lo = _mm256_castsi256_si128(v);
        let hi = _mm256_extracti128_si256::<1>(v);
        let s = _mm_add_epi32(lo, hi);
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
        _mm_cvtsi128_si32(s)
    }

    /// One query against one row.
    ///
    /// # Safety
    /// `q` and `r` point to `dim` readable floats; the CPU supports AVX2 and FMA.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot1(q: *const f32, r: *const f32, dim: usize) -> f32 {
        let (mut a0, mut a1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        let mut i = 0;
        // SAFETY: every offset read is < dim, which the caller guarantees readable.
        unsafe {
            while i + 16 <= dim {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(i)), _mm256_loadu_ps(r.add(i)), a0);
                a1 = _mm256_fmadd_ps(
                    _mm256_loadu_ps(q.add(i + 8)),
                    _mm256_loadu_ps(r.add(i + 8)),
                    a1,
                );
                i += 16;
            }
            if i + 8 <= dim {
                a0 = _mm256_fmadd_ps(_mm256_loadu_ps(q.add(i)), _mm256_loadu_ps(r.add(i)), a0);
                i += 8;
            }
            let mut s = hsum(_mm256_add_ps(a0, a1));
            while i < dim {
                s += *q.add(i) * *r.add(i);
                i += 1;
            }
            s
        }
    }

    /// How far ahead of the four rows being scored [`dot4`] asks for rows. A single-query scan of
    /// 100k x 384 rows (154 MB) is bound by memory; asking 8-64 KiB ahead made it 8-10% faster, the
    /// same across that range, than leaving the stream to the hardware prefetcher (2 KiB: no gain;
    /// 200 alternated rounds per setting in one process, old vs new, load 1.8-5.8).
    const PREFETCH: usize = 16 << 10;

    /// One query against four rows starting at `r` (stride `dim`); the query is loaded once per step.
    /// Each step also prefetches two cache lines `PREFETCH` bytes ahead: the four rows are one
    /// contiguous run of `4 * dim` floats, and `dim / 8` steps of 128 bytes cover it, so consecutive
    /// calls prefetch the rows that follow without gaps.
    ///
    /// # Safety
    /// `q` points to `dim` floats, `r` to `4 * dim` floats; the CPU supports AVX2 and FMA.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn dot4(q: *const f32, r: *const f32, dim: usize) -> [f32; 4] {
        let mut acc = [_mm256_setzero_ps(); 4];
        let mut i = 0;
        // A prefetch past the end of the rows is harmless: it never faults, hence `wrapping_add`.
        let mut ahead = r.cast::<u8>().wrapping_add(PREFETCH);
        // SAFETY: offsets stay below dim within each of the four rows.
        unsafe {
            while i + 8 <= dim {
                _mm_prefetch::<_MM_HINT_T0>(ahead.cast());
                _mm_prefetch::<_MM_HINT_T0>(ahead.wrapping_add(64).cast());
                ahead = ahead.wrapping_add(128);
                let vq = _mm256_loadu_ps(q.add(i));
                for (j, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(vq, _mm256_loadu_ps(r.add(j * dim + i)), *a);
                }
                i += 8;
            }
            let mut out = [hsum(acc[0]), hsum(acc[1]), hsum(acc[2]), hsum(acc[3])];
            while i < dim {
                for (j, o) in out.iter_mut().enumerate() {
                    *o += *q.add(i) * *r.add(j * dim + i);
                }
                i += 1;
            }
            out
        }
    }

    /// Three queries against four rows: twelve accumulators plus three query registers and one row
    /// register, exactly the sixteen AVX2 registers (an array-of-arrays form made LLVM spill).
    ///
    /// # Safety
    /// `q` points to `3 * dim` floats, `r` to `4 * dim` floats; the CPU supports AVX2 and FMA.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn tile_3x4(q: *const f32, r: *const f32, dim: usize) -> [[f32; 4]; 3] {
        let z = _mm256_setzero_ps();
        let (mut a00, mut a01, mut a02, mut a03) = (z, z, z, z);
        let (mut a10, mut a11, mut a12, mut a13) = (z, z, z, z);
        let (mut a20, mut a21, mut a22, mut a23) = (z, z, z, z);
        let mut i = 0;
        // SAFETY: offsets stay below dim within each of the three queries and four rows.
        unsafe {
            while i + 8 <= dim {
                let q0 = _mm256_loadu_ps(q.add(i));
                let q1 = _mm256_loadu_ps(q.add(dim + i));
                let q2 = _mm256_loadu_ps(q.add(2 * dim + i));
                let r0 = _mm256_loadu_ps(r.add(i));
                a00 = _mm256_fmadd_ps(q0, r0, a00);
                a10 = _mm256_fmadd_ps(q1, r0, a10);
                a20 = _mm256_fmadd_ps(q2, r0, a20);
                let r1 = _mm256_loadu_ps(r.add(dim + i));
                a01 = _mm256_fmadd_ps(q0, r1, a01);
                a11 = _mm256_fmadd_ps(q1, r1, a11);
                a21 = _mm256_fmadd_ps(q2, r1, a21);
                let r2 = _mm256_loadu_ps(r.add(2 * dim + i));
                a02 = _mm256_fmadd_ps(q0, r2, a02);
                a12 = _mm256_fmadd_ps(q1, r2, a12);
                a22 = _mm256_fmadd_ps(q2, r2, a22);
                let r3 = _mm256_loadu_ps(r.add(3 * dim + i));
                a03 = _mm256_fmadd_ps(q0, r3, a03);
                a13 = _mm256_fmadd_ps(q1, r3, a13);
                a23 = _mm256_fmadd_ps(q2, r3, a23);
                i += 8;
            }
            let mut out = [
                [hsum(a00), hsum(a01), hsum(a02), hsum(a03)],
                [hsum(a10), hsum(a11), hsum(a12), hsum(a13)],
                [hsum(a20), hsum(a21), hsum(a22), hsum(a23)],
            ];
            while i < dim {
                for (qi, o) in out.iter_mut().enumerate() {
                    for (j, x) in o.iter_mut().enumerate() {
                        *x += *q.add(qi * dim + i) * *r.add(j * dim + i);
                    }
                }
                i += 1;
            }
            out
        }
    }

    /// # Safety
    /// `rows.len() == out.len() * dim`, `query.len() == dim`; AVX2 and FMA available.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_rows(query: &[f32], rows: &[f32], dim: usize, out: &mut [f32]) {
        let n = out.len();
        let (q, r) = (query.as_ptr(), rows.as_ptr());
        let mut i = 0;
        // SAFETY: row i..i+4 (or i) lies inside `rows` because rows.len() == n * dim.
        unsafe {
            while i + 4 <= n {
                out[i..i + 4].copy_from_slice(&dot4(q, r.add(i * dim), dim));
                i += 4;
            }
            while i < n {
                out[i] = dot1(q, r.add(i * dim), dim);
                i += 1;
            }
        }
    }

    /// Each four-row tile is loaded once into L1 and scored against every group of three queries.
    ///
    /// # Safety
    /// `queries.len() == nq * dim`, `rows.len() == nr * dim`, `out.len() == nq * nr`; AVX2 and FMA.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn dot_block(
        queries: &[f32],
        rows: &[f32],
        dim: usize,
        nq: usize,
        nr: usize,
        out: &mut [f32],
    ) {
        let (q, r) = (queries.as_ptr(), rows.as_ptr());
        let q3 = nq - nq % 3;
        let r4 = nr - nr % 4;
        // SAFETY: every pointer offset addresses a query < nq or a row < nr, inside the slices.
        unsafe {
            let mut ri = 0;
            while ri < r4 {
                let mut qi = 0;
                while qi < q3 {
                    let t = tile_3x4(q.add(qi * dim), r.add(ri * dim), dim);
                    for (j, row) in t.iter().enumerate() {
                        out[(qi + j) * nr + ri..(qi + j) * nr + ri + 4].copy_from_slice(row);
                    }
                    qi += 3;
                }
                ri += 4;
            }
            for qi in 0..q3 {
                for ri in r4..nr {
                    out[qi * nr + ri] = dot1(q.add(qi * dim), r.add(ri * dim), dim);
                }
            }
            for qi in q3..nq {
                dot_rows(
                    &queries[qi * dim..(qi + 1) * dim],
                    rows,
                    dim,
                    &mut out[qi * nr..(qi + 1) * nr],
                );
            }
        }
    }

    /// int8 dot of one query against four rows: |q| · sign(code, q) through `maddubs`, which cannot
    /// saturate because codes and the query stay within [-127, 127].
    ///
    /// # Safety
    /// `q` points to `dim` bytes, `r` to `4 * dim` bytes; AVX2 available.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn dot4_i8(q: *const i8, r: *const i8, dim: usize) -> [i32; 4] {
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_si256(); 4];
        let mut i = 0;
        // SAFETY: offsets stay below dim within the query and each of the four rows.
        unsafe {
            while i + 32 <= dim {
                let vq = _mm256_loadu_si256(q.add(i).cast());
                let aq = _mm256_abs_epi8(vq);
                for (j, a) in acc.iter_mut().enumerate() {
                    let vr = _mm256_loadu_si256(r.add(j * dim + i).cast());
                    let p16 = _mm256_maddubs_epi16(aq, _mm256_sign_epi8(vr, vq));
                    *a = _mm256_add_epi32(*a, _mm256_madd_epi16(p16, ones));
                }
                i += 32;
            }
            let mut out = [
                hsum_i32(acc[0]),
                hsum_i32(acc[1]),
                hsum_i32(acc[2]),
                hsum_i32(acc[3]),
            ];
            while i < dim {
                for (j, o) in out.iter_mut().enumerate() {
                    *o += i32::from(*q.add(i)) * i32::from(*r.add(j * dim + i));
                }
                i += 1;
            }
            out
        }
    }

    /// # Safety
    /// `codes.len() == out.len() * dim`, `query.len() == dim`; AVX2 available.
    #[target_feature(enable = "avx2")]
    pub unsafe fn dot_rows_i8(query: &[i8], codes: &[i8], dim: usize, out: &mut [i32]) {
        let n = out.len();
        let (q, r) = (query.as_ptr(), codes.as_ptr());
        let mut i = 0;
        // SAFETY: rows i..i+4 lie inside `codes` because codes.len() == n * dim.
        unsafe {
            while i + 4 <= n {
                out[i..i + 4].copy_from_slice(&dot4_i8(q, r.add(i * dim), dim));
                i += 4;
            }
        }
        while i < n {
            out[i] = super::portable::dot_i8(query, &codes[i * dim..(i + 1) * dim]);
            i += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    }

    #[test]
    fn dot_rows_matches_portable_for_odd_dims() {
        let mut s = 7;
        for dim in [1, 3, 8, 15, 16, 17, 33, 384, 385] {
            let n = 11;
            let q: Vec<f32> = (0..dim).map(|_| lcg(&mut s)).collect();
            let rows: Vec<f32> = (0..n * dim).map(|_| lcg(&mut s)).collect();
            let mut a = vec![0.0; n];
            dot_rows(&q, &rows, dim, &mut a);
            let mut b = vec![0.0; n];
            portable::dot_rows(&q, &rows, dim, &mut b);
            for (x, y) in a.iter().zip(&b) {
                assert!((x - y).abs() < 1e-4, "dim {dim}: {x} vs {y}");
            }
        }
    }

    #[test]
    fn long_block_with_prefetch_matches_portable() {
        // 303 rows: the prefetch stream runs 16 KiB past the end of the slice in the last rows,
        // and 303 % 4 != 0 leaves rows for the one-row kernel.
        let mut s = 13;
        for dim in [384, 385, 8, 7] {
            let n = 303;
            let q: Vec<f32> = (0..dim).map(|_| lcg(&mut s)).collect();
            let rows: Vec<f32> = (0..n * dim).map(|_| lcg(&mut s)).collect();
            let mut a = vec![0.0; n];
            dot_rows(&q, &rows, dim, &mut a);
            for (r, x) in a.iter().enumerate() {
                let want = portable::dot(&q, &rows[r * dim..(r + 1) * dim]);
                assert!((x - want).abs() < 1e-4, "dim {dim} row {r}: {x} vs {want}");
            }
            // A row's score does not depend on where it sits in the block (same kernel, same order).
            let mut tail = vec![0.0; 4];
            dot_rows(&q, &rows[(n - 7) * dim..(n - 3) * dim], dim, &mut tail);
            assert_eq!(tail[..], a[n - 7..n - 3]);
        }
    }

    #[test]
    fn dot_block_matches_dot_rows() {
        let mut s = 3;
        for (nq, nr, dim) in [(1, 1, 5), (3, 4, 8), (7, 13, 385), (64, 9, 384)] {
            let q: Vec<f32> = (0..nq * dim).map(|_| lcg(&mut s)).collect();
            let rows: Vec<f32> = (0..nr * dim).map(|_| lcg(&mut s)).collect();
            let mut out = vec![0.0; nq * nr];
            dot_block(&q, &rows, dim, &mut out);
            for qi in 0..nq {
                let mut want = vec![0.0; nr];
                portable::dot_rows(&q[qi * dim..(qi + 1) * dim], &rows, dim, &mut want);
                for (x, y) in out[qi * nr..(qi + 1) * nr].iter().zip(&want) {
                    assert!((x - y).abs() < 1e-4);
                }
            }
        }
    }

    #[test]
    fn i8_rows_are_exact() {
        let mut s = 11;
        for dim in [1, 31, 32, 33, 384, 100] {
            let n = 9;
            let q: Vec<i8> = (0..dim).map(|_| (lcg(&mut s) * 254.0) as i8).collect();
            let codes: Vec<i8> = (0..n * dim).map(|_| (lcg(&mut s) * 254.0) as i8).collect();
            let mut a = vec![0; n];
            dot_rows_i8(&q, &codes, dim, &mut a);
            let mut b = vec![0; n];
            portable::dot_rows_i8(&q, &codes, dim, &mut b);
            assert_eq!(a, b, "dim {dim}");
            // the AVX2 kernel too, where the dispatch above took the AVX-512 one
            #[cfg(target_arch = "x86_64")]
            if simd_level() == SimdLevel::Avx2 {
                let mut c = vec![0; n];
                // SAFETY: AVX2 detected; the lengths match.
                unsafe { avx2::dot_rows_i8(&q, &codes, dim, &mut c) };
                assert_eq!(c, b, "dim {dim} (AVX2)");
            }
        }
    }
}
