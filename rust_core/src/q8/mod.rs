//! Block-quantised int8 matrices (the GGUF `Q8_0` layout: one f32 scale per 32 weights) and the
//! products a small language model needs from them on a CPU: `x · Wᵀ` for one or a few input rows
//! (each input row is quantised the same way, as llama.cpp does) and row look-ups (embeddings).
//!
//! Why: a decode step of Gemma 3 270M reads every weight once per token, so the step is bound by
//! memory traffic; int8 weights are a quarter of f32 and half of bf16, and CPUs without native bf16
//! arithmetic (AVX2-only hosts) spend more time converting bf16 than multiplying. Rows are split
//! across rayon's pool with the GIL released by the caller.

use rayon::prelude::*;

use crate::errors::{CoreError, CoreResult};
use crate::vector::simd::{simd_level, SimdLevel};

/// Weights per scale.
pub const BLOCK: usize = 32;
/// Largest code magnitude (keeps the AVX2 `maddubs` path free of saturation).
const QMAX: f32 = 127.0;
/// Below this many multiply-adds a product runs on the calling thread (a pool hand-off costs more).
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// A row-major `rows × cols` matrix of int8 codes with one scale per block of 32 columns.
#[derive(Debug, Clone)]
pub struct Q8Matrix {
    rows: usize,
    cols: usize,
    codes: Vec<i8>,
    scales: Vec<f32>,
}

/// Quantise `v` (a multiple of [`BLOCK`] long) into `codes` and one scale per block.
fn quantize_blocks(v: &[f32], codes: &mut [i8], scales: &mut [f32]) {
    for ((block, out), scale) in v
        .chunks_exact(BLOCK)
        .zip(codes.chunks_exact_mut(BLOCK))
        .zip(scales.iter_mut())
    {
        let amax = block.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        let d = amax / QMAX;
        *scale = d;
        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
        for (o, x) in out.iter_mut().zip(block) {
            // |x * inv| <= 127 by construction; the clamp guards rounding at the edge.
            *o = (x * inv).round().clamp(-QMAX, QMAX) as i8;
        }
    }
}

impl Q8Matrix {
    fn check_shape(rows: usize, cols: usize) -> CoreResult<()> {
        if rows == 0 || cols == 0 {
            return Err(CoreError::invalid(format!(
                "a quantised matrix needs at least one row and one column, got {rows}×{cols}"
            )));
        }
        if cols % BLOCK != 0 {
            return Err(CoreError::invalid(format!(
                "columns must be a multiple of {BLOCK} to quantise in blocks, got {cols}"
            )));
        }
        Ok(())
    }

    /// Quantise a row-major f32 matrix. Non-finite weights are rejected.
    pub fn quantize(data: &[f32], rows: usize, cols: usize) -> CoreResult<Self> {
        Self::check_shape(rows, cols)?;
        if data.len() != rows * cols {
            return Err(CoreError::invalid(format!(
                "expected {rows}×{cols} = {} values, got {}",
                rows * cols,
                data.len()
            )));
        }
        if let Some(pos) = data.iter().position(|x| !x.is_finite()) {
            return Err(CoreError::invalid(format!(
                "weight at row {}, column {} is not finite",
                pos / cols,
                pos % cols
            )));
        }
        let mut codes = vec![0i8; rows * cols];
        let mut scales = vec![0f32; rows * cols / BLOCK];
        codes
            .par_chunks_mut(cols)
            .zip(scales.par_chunks_mut(cols / BLOCK))
            .zip(data.par_chunks(cols))
            .for_each(|((c, s), row)| quantize_blocks(row, c, s));
        Ok(Self {
            rows,
            cols,
            codes,
            scales,
        })
    }

    /// Rebuild from stored codes and scales (as written by [`Q8Matrix::codes`] / [`Q8Matrix::scales`]).
    pub fn from_parts(
        codes: Vec<i8>,
        scales: Vec<f32>,
        rows: usize,
        cols: usize,
    ) -> CoreResult<Self> {
        Self::check_shape(rows, cols)?;
        if codes.len() != rows * cols || scales.len() != rows * cols / BLOCK {
            return Err(CoreError::invalid(format!(
                "codes must hold {rows}×{cols} values and scales {rows}×{}, got {} and {}",
                cols / BLOCK,
                codes.len(),
                scales.len()
            )));
        }
        if codes.contains(&i8::MIN) {
            return Err(CoreError::invalid("codes must lie in [-127, 127]"));
        }
        if scales.iter().any(|s| !s.is_finite() || *s < 0.0) {
            return Err(CoreError::invalid("scales must be finite and non-negative"));
        }
        Ok(Self {
            rows,
            cols,
            codes,
            scales,
        })
    }

    /// Number of rows (outputs of a product).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (inputs of a product).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The int8 codes, row-major.
    pub fn codes(&self) -> &[i8] {
        &self.codes
    }

    /// One scale per block of 32 codes, row-major (`rows × cols / 32`).
    pub fn scales(&self) -> &[f32] {
        &self.scales
    }

    fn row_codes(&self, r: usize) -> &[i8] {
        &self.codes[r * self.cols..(r + 1) * self.cols]
    }

    fn row_scales(&self, r: usize) -> &[f32] {
        let nb = self.cols / BLOCK;
        &self.scales[r * nb..(r + 1) * nb]
    }

    /// Bytes held by codes and scales.
    pub fn nbytes(&self) -> usize {
        self.codes.len() + self.scales.len() * std::mem::size_of::<f32>()
    }

    /// Dequantised copies of rows `ids` into `out` (`ids.len() × cols`).
    pub fn gather(&self, ids: &[usize], out: &mut [f32]) -> CoreResult<()> {
        if out.len() != ids.len() * self.cols {
            return Err(CoreError::internal("gather output has the wrong length"));
        }
        let nb = self.cols / BLOCK;
        for (&id, dst) in ids.iter().zip(out.chunks_exact_mut(self.cols)) {
            if id >= self.rows {
                return Err(CoreError::invalid(format!(
                    "row {id} is out of range for a matrix of {} rows",
                    self.rows
                )));
            }
            let codes = &self.codes[id * self.cols..(id + 1) * self.cols];
            let scales = &self.scales[id * nb..(id + 1) * nb];
            for ((d, c), s) in dst
                .chunks_exact_mut(BLOCK)
                .zip(codes.chunks_exact(BLOCK))
                .zip(scales)
            {
                for (o, &q) in d.iter_mut().zip(c) {
                    *o = f32::from(q) * s;
                }
            }
        }
        Ok(())
    }

    /// `out[t, r] = Σ_c x[t, c] · W[r, c]` for the `m` rows of `x` (`m × cols`); `out` is `m × rows`.
    /// Each input row is quantised in blocks of 32 first, so the inner products are integer.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) -> CoreResult<()> {
        if x.len() != m * self.cols {
            return Err(CoreError::invalid(format!(
                "input has {} values; expected {m} rows of {} columns",
                x.len(),
                self.cols
            )));
        }
        if out.len() != m * self.rows {
            return Err(CoreError::internal("matmul output has the wrong length"));
        }
        if m == 0 {
            return Ok(());
        }
        if let Some(pos) = x.iter().position(|v| !v.is_finite()) {
            return Err(CoreError::invalid(format!(
                "input value at row {}, column {} is not finite",
                pos / self.cols,
                pos % self.cols
            )));
        }
        let nb = self.cols / BLOCK;
        let mut xq = vec![0i8; m * self.cols];
        let mut xs = vec![0f32; m * nb];
        let quantize_rows =
            |((row, c), s): ((&[f32], &mut [i8]), &mut [f32])| quantize_blocks(row, c, s);
        let rows_in = x
            .par_chunks_exact(self.cols)
            .zip(xq.par_chunks_exact_mut(self.cols))
            .zip(xs.par_chunks_exact_mut(nb));
        if m >= 16 {
            rows_in.for_each(quantize_rows);
        } else {
            x.chunks_exact(self.cols)
                .zip(xq.chunks_exact_mut(self.cols))
                .zip(xs.chunks_exact_mut(nb))
                .for_each(quantize_rows);
        }
        let avx2 = simd_level() == SimdLevel::Avx2;
        // Tasks own disjoint weight-row ranges; for several inputs each task writes the columns
        // [r0, r1) of every output row, through a raw pointer (the ranges never overlap).
        let chunk = chunk_rows(self.rows, self.cols * m)
            .next_multiple_of(2)
            .min(self.rows);
        let dst = OutPtr(out.as_mut_ptr());
        let (rows, cols) = (self.rows, self.cols);
        let work = |r0: usize| {
            let r1 = (r0 + chunk).min(rows);
            let put = |t: usize, r: usize, v: f32| {
                debug_assert!(t < m && r < rows);
                // SAFETY: t < m and r < rows index inside `out` (m × rows); each (t, r) is written
                // by exactly one task, the one owning row r.
                unsafe { *dst.get().add(t * rows + r) = v }
            };
            let mut r = r0;
            // Two weight rows by four inputs per pass: each loaded block feeds eight products.
            while m >= 4 && r + 2 <= r1 {
                let (w0, w1) = (self.row_codes(r), self.row_codes(r + 1));
                let (s0, s1) = (self.row_scales(r), self.row_scales(r + 1));
                let mut t = 0;
                while t + 4 <= m {
                    let qc = &xq[t * cols..(t + 4) * cols];
                    let qs = &xs[t * nb..(t + 4) * nb];
                    let [a, b] = tile_2x4([w0, w1], [s0, s1], qc, qs, avx2);
                    for j in 0..4 {
                        put(t + j, r, a[j]);
                        put(t + j, r + 1, b[j]);
                    }
                    t += 4;
                }
                for t in t..m {
                    let qc = &xq[t * cols..(t + 1) * cols];
                    let qs = &xs[t * nb..(t + 1) * nb];
                    put(t, r, row_dot(w0, s0, qc, qs, avx2));
                    put(t, r + 1, row_dot(w1, s1, qc, qs, avx2));
                }
                r += 2;
            }
            for r in r..r1 {
                let (wc, ws) = (self.row_codes(r), self.row_scales(r));
                let mut t = 0;
                while t + 4 <= m {
                    let qc = &xq[t * cols..(t + 4) * cols];
                    let qs = &xs[t * nb..(t + 4) * nb];
                    for (j, v) in row_dot4(wc, ws, qc, qs, avx2).into_iter().enumerate() {
                        put(t + j, r, v);
                    }
                    t += 4;
                }
                for t in t..m {
                    put(
                        t,
                        r,
                        row_dot(
                            wc,
                            ws,
                            &xq[t * cols..(t + 1) * cols],
                            &xs[t * nb..(t + 1) * nb],
                            avx2,
                        ),
                    );
                }
            }
        };
        if rows * cols * m < PARALLEL_MIN_WORK {
            (0..rows).step_by(chunk).for_each(work);
        } else {
            (0..rows).into_par_iter().step_by(chunk).for_each(work);
        }
        Ok(())
    }
}

/// The output of a product, shared by tasks that write disjoint elements of it.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint (t, r) elements only (see `Q8Matrix::matmul`), and the buffer
// outlives the parallel section that uses the pointer.
unsafe impl Send for OutPtr {}
// SAFETY: as for Send: no two tasks write the same element, and nothing reads it meanwhile.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// Rows per parallel task: enough work to amortise scheduling, enough tasks to balance threads.
fn chunk_rows(rows: usize, work_per_row: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let by_balance = rows.div_ceil(threads * 8);
    let by_work = (1 << 16) / work_per_row.max(1);
    by_balance.max(by_work).clamp(1, rows)
}

/// One weight row against one quantised input row.
#[inline]
fn row_dot(wc: &[i8], ws: &[f32], qc: &[i8], qs: &[f32], avx2: bool) -> f32 {
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
fn row_dot4(wc: &[i8], ws: &[f32], qc: &[i8], qs: &[f32], avx2: bool) -> [f32; 4] {
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
fn tile_2x4(wc: [&[i8]; 2], ws: [&[f32]; 2], qc: &[i8], qs: &[f32], avx2: bool) -> [[f32; 4]; 2] {
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

#[cfg(target_arch = "x86_64")]
mod avx2 {
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

    /// The four lane sums of `a`, `b`, `c`, `d` as one vector.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn hsum4(a: __m256, b: __m256, c: __m256, d: __m256) -> [f32; 4] {
        let ab = _mm256_hadd_ps(a, b);
        let cd = _mm256_hadd_ps(c, d);
        let abcd = _mm256_hadd_ps(ab, cd);
        let s = _mm_add_ps(
            _mm256_castps256_ps128(abcd),
            _mm256_extractf128_ps::<1>(abcd),
        );
        let mut out = [0f32; 4];
        // SAFETY: `out` holds four f32.
        unsafe { _mm_storeu_ps(out.as_mut_ptr(), s) };
        out
    }

    /// # Safety
    /// AVX2 + FMA available; both rows of `wc` hold `cols` codes and of `ws` `nb = cols / 32`
    /// scales; `qc` holds 4 rows of `cols` codes and `qs` 4 rows of `nb` scales.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn tile_2x4(
        wc: [&[i8]; 2],
        ws: [&[f32]; 2],
        qc: &[i8],
        qs: &[f32],
    ) -> [[f32; 4]; 2] {
        let (nb, cols) = (ws[0].len(), wc[0].len());
        let ones = _mm256_set1_epi16(1);
        let mut acc0 = [_mm256_setzero_ps(); 4];
        let mut acc1 = [_mm256_setzero_ps(); 4];
        let (w0, w1, q) = (wc[0].as_ptr(), wc[1].as_ptr(), qc.as_ptr());
        // SAFETY: block b covers [32b, 32b + 32) of each weight row and of each input row j at
        // offset j * cols, all inside their slices; scale indices stay below nb and 4 * nb.
        unsafe {
            for b in 0..nb {
                let vw0 = _mm256_loadu_si256(w0.add(b * BLOCK).cast());
                let vw1 = _mm256_loadu_si256(w1.add(b * BLOCK).cast());
                // |w| once per weight block; the input takes w's signs (maddubs: u8 × i8).
                let aw0 = _mm256_abs_epi8(vw0);
                let aw1 = _mm256_abs_epi8(vw1);
                let s0 = *ws[0].get_unchecked(b);
                let s1 = *ws[1].get_unchecked(b);
                for j in 0..4 {
                    let vq = _mm256_loadu_si256(q.add(j * cols + b * BLOCK).cast());
                    let sx = *qs.get_unchecked(j * nb + b);
                    let p0 = _mm256_madd_epi16(
                        _mm256_maddubs_epi16(aw0, _mm256_sign_epi8(vq, vw0)),
                        ones,
                    );
                    let p1 = _mm256_madd_epi16(
                        _mm256_maddubs_epi16(aw1, _mm256_sign_epi8(vq, vw1)),
                        ones,
                    );
                    acc0[j] =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(s0 * sx), acc0[j]);
                    acc1[j] =
                        _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(s1 * sx), acc1[j]);
                }
            }
            [
                hsum4(acc0[0], acc0[1], acc0[2], acc0[3]),
                hsum4(acc1[0], acc1[1], acc1[2], acc1[3]),
            ]
        }
    }

    /// # Safety
    /// AVX2 + FMA available; `qc` holds 4 rows of `wc.len()` codes, `qs` 4 rows of `ws.len()` scales.
    #[target_feature(enable = "avx2,fma")]
    pub unsafe fn row_dot4(wc: &[i8], ws: &[f32], qc: &[i8], qs: &[f32]) -> [f32; 4] {
        let (nb, cols) = (ws.len(), wc.len());
        let ones = _mm256_set1_epi16(1);
        let mut acc = [_mm256_setzero_ps(); 4];
        let (w, q) = (wc.as_ptr(), qc.as_ptr());
        // SAFETY: block b of row j lies at [j * cols + 32b, j * cols + 32b + 32) inside `qc`,
        // and at [32b, 32b + 32) inside `wc`; scale indices stay below 4 * nb.
        unsafe {
            for b in 0..nb {
                let vw = _mm256_loadu_si256(w.add(b * BLOCK).cast());
                let sw = *ws.get_unchecked(b);
                for (j, a) in acc.iter_mut().enumerate() {
                    let vq = _mm256_loadu_si256(q.add(j * cols + b * BLOCK).cast());
                    let p = _mm256_madd_epi16(
                        _mm256_maddubs_epi16(_mm256_abs_epi8(vq), _mm256_sign_epi8(vw, vq)),
                        ones,
                    );
                    let d = _mm256_set1_ps(sw * *qs.get_unchecked(j * nb + b));
                    *a = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), d, *a);
                }
            }
            [hsum(acc[0]), hsum(acc[1]), hsum(acc[2]), hsum(acc[3])]
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
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn random(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n).map(|_| lcg(&mut s)).collect()
    }

    fn exact(w: &[f32], x: &[f32], rows: usize, cols: usize, m: usize) -> Vec<f32> {
        let mut out = vec![0.0; m * rows];
        for t in 0..m {
            for r in 0..rows {
                out[t * rows + r] = (0..cols)
                    .map(|c| f64::from(w[r * cols + c]) * f64::from(x[t * cols + c]))
                    .sum::<f64>() as f32;
            }
        }
        out
    }

    #[test]
    fn matmul_is_close_to_f32_for_one_and_many_rows() {
        let (rows, cols) = (300, 640);
        let w = random(rows * cols, 1);
        let q = Q8Matrix::quantize(&w, rows, cols).expect("quantise");
        for m in [1, 3, 7] {
            let x = random(m * cols, 2 + m as u64);
            let mut out = vec![0.0; m * rows];
            q.matmul(&x, m, &mut out).expect("matmul");
            let want = exact(&w, &x, rows, cols, m);
            // Two int8 roundings per product, each at most half a step (1/254 of a block's
            // max): over 640 products the error's standard deviation is ~0.05 here.
            let mut total = 0.0f32;
            for (a, b) in out.iter().zip(&want) {
                assert!((a - b).abs() < 0.3, "{a} vs {b} (m={m})");
                total += (a - b).abs();
            }
            assert!(
                total / (out.len() as f32) < 0.06,
                "mean error {}",
                total / out.len() as f32
            );
        }
    }

    #[test]
    fn avx2_and_portable_kernels_agree_exactly_on_integer_sums() {
        let (rows, cols) = (17, 96);
        let w = random(rows * cols, 5);
        let x = random(cols, 6);
        let q = Q8Matrix::quantize(&w, rows, cols).expect("quantise");
        let xm = Q8Matrix::quantize(&x, 1, cols).expect("quantise input");
        for r in 0..rows {
            let wc = &q.codes()[r * cols..(r + 1) * cols];
            let ws = &q.scales()[r * 3..(r + 1) * 3];
            let a = portable_row_dot(wc, ws, xm.codes(), xm.scales());
            let b = row_dot(
                wc,
                ws,
                xm.codes(),
                xm.scales(),
                simd_level() == SimdLevel::Avx2,
            );
            assert!((a - b).abs() <= 1e-5 * a.abs().max(1.0), "{a} vs {b}");
        }
    }

    #[test]
    fn tiled_products_match_the_reference_kernel_for_every_shape() {
        // Odd row counts and input counts that are not multiples of 4 exercise every remainder path
        // (2×4 tiles, single leftover rows, leftover inputs), serial and parallel.
        for (rows, cols, m) in [(33, 96, 9), (2, 32, 4), (5, 64, 1), (301, 640, 13)] {
            let w = random(rows * cols, rows as u64);
            let x = random(m * cols, 100 + m as u64);
            let q = Q8Matrix::quantize(&w, rows, cols).expect("quantise");
            let xq = Q8Matrix::quantize(&x, m, cols).expect("quantise input");
            let mut out = vec![0.0; m * rows];
            q.matmul(&x, m, &mut out).expect("matmul");
            let nb = cols / BLOCK;
            for t in 0..m {
                for r in 0..rows {
                    let want = portable_row_dot(
                        &q.codes()[r * cols..(r + 1) * cols],
                        &q.scales()[r * nb..(r + 1) * nb],
                        &xq.codes()[t * cols..(t + 1) * cols],
                        &xq.scales()[t * nb..(t + 1) * nb],
                    );
                    let got = out[t * rows + r];
                    assert!(
                        (got - want).abs() <= 1e-4 * want.abs().max(1.0),
                        "{rows}x{cols}, m={m}, t={t}, r={r}: {got} vs {want}"
                    );
                }
            }
        }
    }

    #[test]
    fn gather_dequantises_within_half_a_step() {
        let (rows, cols) = (10, 64);
        let w = random(rows * cols, 9);
        let q = Q8Matrix::quantize(&w, rows, cols).expect("quantise");
        let mut out = vec![0.0; 2 * cols];
        q.gather(&[3, 7], &mut out).expect("gather");
        for (i, &r) in [3usize, 7].iter().enumerate() {
            for c in 0..cols {
                let step = q.scales()[r * 2 + c / BLOCK];
                let got = out[i * cols + c];
                assert!((got - w[r * cols + c]).abs() <= step * 0.5 + 1e-7);
            }
        }
        assert!(q.gather(&[10], &mut vec![0.0; cols]).is_err());
    }

    #[test]
    fn round_trip_through_parts_and_bad_shapes() {
        let w = random(4 * 32, 3);
        let q = Q8Matrix::quantize(&w, 4, 32).expect("quantise");
        let back =
            Q8Matrix::from_parts(q.codes().to_vec(), q.scales().to_vec(), 4, 32).expect("parts");
        assert_eq!(back.codes(), q.codes());
        assert!(Q8Matrix::quantize(&w, 4, 30).is_err());
        assert!(Q8Matrix::quantize(&[f32::NAN; 32], 1, 32).is_err());
        assert!(Q8Matrix::from_parts(vec![i8::MIN; 32], vec![1.0], 1, 32).is_err());
        let mut out = vec![0.0; 4];
        assert!(q.matmul(&[f32::INFINITY; 32], 1, &mut out).is_err());
    }

    #[test]
    fn zero_blocks_stay_zero() {
        let q = Q8Matrix::quantize(&[0.0; 64], 2, 32).expect("quantise");
        let mut out = vec![1.0; 2];
        q.matmul(&[1.0; 32], 1, &mut out).expect("matmul");
        assert_eq!(out, vec![0.0, 0.0]);
    }
}
