//! Half-precision (IEEE binary16) weight matrices and `x · Wᵀ` in f32 arithmetic, for the sentence
//! embedder's short inputs.
//!
//! Why: a query of a dozen tokens through MiniLM's six layers reads every weight once and does little
//! arithmetic per weight, so its time is the weights' memory traffic; binary16 halves it against
//! f32. Unlike int8 the rounding is tiny (11-bit significands: the pooled vectors stay within ~1e-6
//! cosine of the f32 model's), so vectors of short texts agree with those of the f32 batch path.
//! Weights widen to f32 a few rows at a time into a small scratch buffer and every product and sum is
//! f32 (FMA on AVX2 hosts).

use rayon::prelude::*;

use crate::errors::{CoreError, CoreResult};
use crate::vector::simd::{simd_level, SimdLevel};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(test)]
mod tests;

/// Weight rows widened together (the tile height of the kernels).
const TILE_ROWS: usize = 4;
/// Below this many multiply-adds (~0.1 ms on one core) a product runs on the calling thread (a pool
/// hand-off costs more); from it a query of 5 tokens splits MiniLM's QKV and feed-forward products.
const PARALLEL_MIN_WORK: usize = 1 << 21;

/// The f32 value of an IEEE binary16 bit pattern (exact: every binary16 value is an f32 value).
pub fn f16_to_f32(h: u16) -> f32 {
    let sign = u32::from(h & 0x8000) << 16;
    let exp = u32::from((h >> 10) & 0x1f);
    let man = u32::from(h & 0x3ff);
    if exp == 0 {
        // zero or subnormal: man · 2⁻²⁴, exact in f32
        let v = man as f32 * f32::from_bits(0x3380_0000);
        return f32::from_bits(v.to_bits() | sign);
    }
    let bits = if exp == 0x1f {
        sign | 0x7f80_0000 | (man << 13)
    } else {
        sign | ((exp + 112) << 23) | (man << 13)
    };
    f32::from_bits(bits)
}

/// A row-major `rows × cols` matrix of binary16 weights.
#[derive(Debug, Clone)]
pub struct F16Matrix {
    rows: usize,
    cols: usize,
    bits: Vec<u16>,
}

/// Whether the F16C + AVX2 + FMA kernels run on this machine (the portable ones otherwise).
fn use_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        simd_level() == SimdLevel::Avx2 && std::arch::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = simd_level;
        false
    }
}

impl F16Matrix {
    /// A matrix from binary16 bit patterns (row-major). Infinities and NaNs are rejected.
    pub fn from_bits(bits: Vec<u16>, rows: usize, cols: usize) -> CoreResult<Self> {
        if rows == 0 || cols == 0 {
            return Err(CoreError::invalid(format!(
                "a weight matrix needs at least one row and one column, got {rows}×{cols}"
            )));
        }
        if bits.len() != rows * cols {
            return Err(CoreError::invalid(format!(
                "expected {rows}×{cols} = {} values, got {}",
                rows * cols,
                bits.len()
            )));
        }
        if let Some(pos) = bits.iter().position(|b| b & 0x7c00 == 0x7c00) {
            return Err(CoreError::invalid(format!(
                "weight at row {}, column {} is not finite",
                pos / cols,
                pos % cols
            )));
        }
        Ok(Self { rows, cols, bits })
    }

    /// Number of rows (outputs of a product).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (inputs of a product).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held by the weights.
    pub fn nbytes(&self) -> usize {
        self.bits.len() * 2
    }

    /// Rows `r0..r0 + n` widened into `out` (`n × cols`).
    fn widen(&self, r0: usize, n: usize, out: &mut [f32], avx2: bool) {
        let src = &self.bits[r0 * self.cols..(r0 + n) * self.cols];
        let dst = &mut out[..n * self.cols];
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: `use_avx2` checked AVX2, FMA and F16C; the slices have equal lengths.
            unsafe { avx2::widen(src, dst) };
            return;
        }
        let _ = avx2;
        for (d, &s) in dst.iter_mut().zip(src) {
            *d = f16_to_f32(s);
        }
    }

    /// `out[t, r] = Σ_c x[t, c] · W[r, c]` for the `m` rows of `x` (`m × cols`); `out` is `m × rows`.
    /// `parallel` splits large products over rayon's current pool; small ones stay on this thread.
    pub fn matmul(&self, x: &[f32], m: usize, out: &mut [f32], parallel: bool) -> CoreResult<()> {
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
        let avx2 = use_avx2();
        let (rows, cols) = (self.rows, self.cols);
        // Tasks own disjoint ranges of weight rows and write columns [r0, r1) of every output row.
        let chunk = if parallel && m * rows * cols >= PARALLEL_MIN_WORK {
            let threads = rayon::current_num_threads().max(1);
            rows.div_ceil(threads * 4).next_multiple_of(TILE_ROWS)
        } else {
            rows
        };
        let dst = OutPtr(out.as_mut_ptr());
        let work = |r0: usize| {
            let r1 = (r0 + chunk).min(rows);
            let mut w = vec![0f32; TILE_ROWS * cols];
            let mut tile = [0f32; TILE_ROWS];
            let mut r = r0;
            while r < r1 {
                let n = TILE_ROWS.min(r1 - r);
                self.widen(r, n, &mut w, avx2);
                let put = |t: usize, tile: &[f32]| {
                    for (j, &v) in tile.iter().enumerate() {
                        // SAFETY: t < m and r + j < rows index inside `out` (m × rows); each
                        // (t, r + j) is written by exactly one task, the one owning row r + j.
                        unsafe { *dst.get().add(t * rows + r + j) = v }
                    }
                };
                let mut t = 0;
                #[cfg(target_arch = "x86_64")]
                if avx2 && n == TILE_ROWS {
                    while t + 3 <= m {
                        // SAFETY: AVX2 + FMA checked; `w` holds four rows, `x` rows t..t + 3.
                        let out3 = unsafe { avx2::dot4x3(&w, &x[t * cols..(t + 3) * cols], cols) };
                        for (i, tile) in out3.iter().enumerate() {
                            put(t + i, tile);
                        }
                        t += 3;
                    }
                }
                for t in t..m {
                    let xt = &x[t * cols..(t + 1) * cols];
                    dot_tile(&w[..n * cols], xt, &mut tile[..n], avx2);
                    put(t, &tile[..n]);
                }
                r += n;
            }
        };
        if chunk >= rows {
            work(0);
        } else {
            (0..rows).into_par_iter().step_by(chunk).for_each(work);
        }
        Ok(())
    }
}

/// `tile[j] = <w row j, x>` for the `tile.len()` rows of `w` (each `x.len()` long).
fn dot_tile(w: &[f32], x: &[f32], tile: &mut [f32], avx2: bool) {
    let cols = x.len();
    #[cfg(target_arch = "x86_64")]
    if avx2 && tile.len() == TILE_ROWS {
        // SAFETY: AVX2 + FMA checked by `use_avx2`; `w` holds four rows of `cols`.
        tile.copy_from_slice(&unsafe { avx2::dot4(w, x) });
        return;
    }
    let _ = avx2;
    for (j, out) in tile.iter_mut().enumerate() {
        *out = portable_dot(&w[j * cols..(j + 1) * cols], x);
    }
}

/// `<a, b>` with eight independent lanes (LLVM vectorises it; the fallback of the AVX2 kernels).
pub fn portable_dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let mut ca = a.chunks_exact(8);
    let mut cb = b.chunks_exact(8);
    for (pa, pb) in ca.by_ref().zip(cb.by_ref()) {
        for i in 0..8 {
            lanes[i] += pa[i] * pb[i];
        }
    }
    let mut sum = lanes.iter().sum::<f32>();
    for (p, q) in ca.remainder().iter().zip(cb.remainder()) {
        sum += p * q;
    }
    sum
}

/// The output of a product, shared by tasks that write disjoint elements of it.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks write disjoint (t, r) elements only (see `F16Matrix::matmul`), and the buffer
// outlives the parallel section that uses the pointer.
unsafe impl Send for OutPtr {}
// SAFETY: as for Send: no two tasks write the same element, and nothing reads it meanwhile.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}
