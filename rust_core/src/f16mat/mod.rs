//! Half-precision (IEEE binary16) weight matrices and `x · Wᵀ` in f32 arithmetic, for the sentence
//! embedder's short inputs.
//!
//! Why: a query of a dozen tokens through MiniLM's six layers reads every weight once and does little
//! arithmetic per weight, so its time is the weights' memory traffic; binary16 halves it against
//! f32. Unlike int8 the rounding is tiny (11-bit significands: the pooled vectors stay within ~1e-6
//! cosine of the f32 model's), so vectors of short texts agree with those of the f32 batch path.
//! The weights are packed in panels of 16 rows, column by column, and the kernel keeps 6 inputs × 16
//! outputs in registers: per column it widens the panel's 16 weights straight from memory and does
//! 12 FMAs, so nothing is widened twice into a scratch buffer and no horizontal sums are needed
//! (the earlier tile of 4 rows × 3 inputs with a horizontal sum per output ran an 11-token query's
//! products at 0.69 ms per layer from cache; this one at 0.40 ms, measured 2026-12-02). Every
//! product and sum is f32, each output one FMA chain over the columns in order.

use crate::errors::{CoreError, CoreResult};
use crate::vector::simd::{simd_level, SimdLevel};

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(test)]
mod tests;

/// Outputs per packed panel: the weights are stored `cols × NR` per panel, so a kernel step reads
/// the `NR` weights of one input column as two 8-lane vectors.
const NR: usize = 16;
/// Rows of `x` per kernel call: `MR × NR / 8 = 12` accumulators of the 16 AVX2 registers.
const MR: usize = 6;
/// Rows of `x` swept over a task's panels before moving on (a multiple of `MR`): 48 rows of 1,536
/// columns are 288 KiB, which stay in L2 while every panel reads them.
const X_BLOCK: usize = 48;
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

/// A `rows × cols` matrix of binary16 weights, packed in panels of `NR` rows: panel `p` holds, for
/// each column `c` in order, the weights of rows `p·NR .. p·NR + NR` (the last panel zero-padded).
#[derive(Debug, Clone)]
pub struct F16Matrix {
    rows: usize,
    cols: usize,
    panels: Vec<u16>,
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
        let n_panels = rows.div_ceil(NR);
        let mut panels = vec![0u16; n_panels * cols * NR];
        for (r, row) in bits.chunks_exact(cols).enumerate() {
            let (p, j) = (r / NR, r % NR);
            let panel = &mut panels[p * cols * NR..(p + 1) * cols * NR];
            for (c, &b) in row.iter().enumerate() {
                panel[c * NR + j] = b;
            }
        }
        Ok(Self { rows, cols, panels })
    }

    /// Number of rows (outputs of a product).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (inputs of a product).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Bytes held by the weights (the last panel's padding included).
    pub fn nbytes(&self) -> usize {
        self.panels.len() * 2
    }

    /// `out[t, r] = Σ_c x[t, c] · W[r, c]` for the `m` rows of `x` (`m × cols`); `out` is `m × rows`.
    /// `parallel` splits large products over rayon's current pool; small ones stay on this thread.
    /// Every output is summed over `c` in order (FMA where available), whatever `m`, the split or
    /// the kernel: a row of `x` gets the same bits alone or with others.
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
        let n_panels = rows.div_ceil(NR);
        // Tasks own disjoint runs of panels and write their columns of every output row.
        let chunk = if parallel && m * rows * cols >= PARALLEL_MIN_WORK {
            let threads = rayon::current_num_threads().max(1);
            n_panels.div_ceil(threads * 4).max(1)
        } else {
            n_panels
        };
        let dst = OutPtr(out.as_mut_ptr());
        let work = |p0: usize| {
            let p1 = (p0 + chunk).min(n_panels);
            for t0 in (0..m).step_by(X_BLOCK) {
                let t1 = (t0 + X_BLOCK).min(m);
                for p in p0..p1 {
                    let panel = &self.panels[p * cols * NR..(p + 1) * cols * NR];
                    let width = NR.min(rows - p * NR);
                    let mut t = t0;
                    while t < t1 {
                        let r = MR.min(t1 - t);
                        let xs = &x[t * cols..(t + r) * cols];
                        let mut put = |i: usize, tile: &[f32; NR]| {
                            for (j, &v) in tile[..width].iter().enumerate() {
                                // SAFETY: t + i < m and p·NR + j < rows index inside `out`
                                // (m × rows); each (t + i, p·NR + j) is written by exactly one
                                // task, the one owning panel p.
                                unsafe { *dst.get().add((t + i) * rows + p * NR + j) = v }
                            }
                        };
                        match r {
                            6 => panel_rows::<6>(panel, xs, cols, avx2, &mut put),
                            5 => panel_rows::<5>(panel, xs, cols, avx2, &mut put),
                            4 => panel_rows::<4>(panel, xs, cols, avx2, &mut put),
                            3 => panel_rows::<3>(panel, xs, cols, avx2, &mut put),
                            2 => panel_rows::<2>(panel, xs, cols, avx2, &mut put),
                            _ => panel_rows::<1>(panel, xs, cols, avx2, &mut put),
                        }
                        t += r;
                    }
                }
            }
        };
        if chunk >= n_panels {
            work(0);
        } else {
            // The caller takes its share at once (see `pool::share`): a query's 24 products each
            // waited on woken workers otherwise, 12 ms for a query after 0.3 s idle against 8.5 ms
            // on one thread.
            let tasks = n_panels.div_ceil(chunk);
            crate::pool::share(
                tasks,
                rayon::current_num_threads(),
                || (),
                |_, t| work(t * chunk),
            );
        }
        Ok(())
    }
}

/// One panel's `NR` outputs for the `R` rows of `xs`, handed to `put` row by row.
fn panel_rows<const R: usize>(
    panel: &[u16],
    xs: &[f32],
    cols: usize,
    avx2: bool,
    put: &mut impl FnMut(usize, &[f32; NR]),
) {
    #[cfg(target_arch = "x86_64")]
    let tile = if avx2 {
        // SAFETY: `use_avx2` checked AVX2, FMA and F16C; the panel holds cols × NR weights and
        // `xs` holds R rows of `cols`.
        unsafe { avx2::panel::<R>(panel, xs, cols) }
    } else {
        portable_panel::<R>(panel, xs, cols)
    };
    #[cfg(not(target_arch = "x86_64"))]
    let tile = {
        let _ = avx2;
        portable_panel::<R>(panel, xs, cols)
    };
    for (i, row) in tile.iter().enumerate() {
        put(i, row);
    }
}

/// The portable kernel: the same sums in the same order as the AVX2 one (`mul_add` is a fused
/// multiply-add), so both give the same bits.
pub fn portable_panel<const R: usize>(panel: &[u16], xs: &[f32], cols: usize) -> [[f32; NR]; R] {
    let mut acc = [[0f32; NR]; R];
    let mut w = [0f32; NR];
    for (k, bits) in panel[..cols * NR].chunks_exact(NR).enumerate() {
        for (wj, &b) in w.iter_mut().zip(bits) {
            *wj = f16_to_f32(b);
        }
        for (t, a) in acc.iter_mut().enumerate() {
            let xv = xs[t * cols + k];
            for (aj, &wj) in a.iter_mut().zip(&w) {
                *aj = wj.mul_add(xv, *aj);
            }
        }
    }
    acc
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
