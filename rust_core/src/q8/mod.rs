//! Block-quantised int8 matrices (the GGUF `Q8_0` layout: one f32 scale per 32 weights) and the
//! products a small language model needs from them on a CPU: `x · Wᵀ` for one or a few input rows
//! (each input row is quantised the same way, as llama.cpp does) and row look-ups (embeddings).
//!
//! Why: a decode step of Gemma 3 270M reads every weight once per token, so the step is bound by
//! memory traffic; int8 weights are a quarter of f32 and half of bf16, and CPUs without native bf16
//! arithmetic (AVX2-only hosts) spend more time converting bf16 than multiplying. Rows are split
//! across rayon's pool with the GIL released by the caller.

use std::sync::OnceLock;

use rayon::prelude::*;

use crate::errors::{CoreError, CoreResult};
use crate::vector::simd::{simd_level, SimdLevel};

pub mod attention;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(all(target_arch = "x86_64", q8_avx512))]
mod avx512;
mod kernels;
pub mod layer;
#[cfg(test)]
mod tests;

use kernels::row_dot;
pub use kernels::{portable_block_fma, portable_row_dot};

/// Weights per scale.
pub const BLOCK: usize = 32;
/// Largest code magnitude (keeps the AVX2 `maddubs` path free of saturation).
const QMAX: f32 = 127.0;
/// Products of at least this many input rows (a prompt's) give each (weight row, input row) pair
/// [`portable_block_fma`]'s bits, whatever the kernel and however it groups the pairs; fewer (a
/// decode step's one row) run row by row with `row_dot`, another summation order that streams a
/// weight row once per input.
pub const PROMPT_INPUTS: usize = 4;
/// Inputs from which the AVX-512 VNNI kernel packs its weight rows: below, packing a group costs
/// more than the products it speeds up.
const VNNI_MIN_INPUTS: usize = 16;
/// Inputs from which the AVX2 kernel packs its weight rows (eight to a vector, widened to i16).
const AVX2_PACK_MIN_INPUTS: usize = 8;
/// Below this many multiply-adds a product runs on the calling thread (a pool hand-off costs more).
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// The kernels the int8 products of several input rows run with on this machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Q8Level {
    /// AVX-512 F/BW/VL/VNNI: sixteen packed weight rows by up to eight inputs (`vpdpbusd`), with
    /// the AVX2 kernels for products of few inputs.
    Avx512Vnni,
    /// AVX2 + FMA (`vpmaddubsw`) 2×4 tiles.
    Avx2,
    /// The portable kernel.
    Portable,
}

impl Q8Level {
    /// The name Python sees (`q8_kernel_level()`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Avx512Vnni => "avx512_vnni",
            Self::Avx2 => "avx2",
            Self::Portable => "portable",
        }
    }
}

/// Whether this build has the AVX-512 VNNI kernel and this CPU can run it (ignoring the switch).
pub fn avx512_vnni_available() -> bool {
    #[cfg(all(target_arch = "x86_64", q8_avx512))]
    {
        simd_level() == SimdLevel::Avx2
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && std::arch::is_x86_feature_detected!("avx512vnni")
    }
    #[cfg(not(all(target_arch = "x86_64", q8_avx512)))]
    false
}

/// The level detected on this CPU (cached after the first call). `MCP_GEMMA_NO_AVX512` in the
/// environment keeps the AVX2 kernels (so their path stays testable on AVX-512 hosts), and
/// `MCP_GEMMA_FORCE_SCALAR` the portable one, as for every other kernel.
pub fn q8_level() -> Q8Level {
    static LEVEL: OnceLock<Q8Level> = OnceLock::new();
    *LEVEL.get_or_init(|| {
        if std::env::var_os("MCP_GEMMA_NO_AVX512").is_none() && avx512_vnni_available() {
            Q8Level::Avx512Vnni
        } else if simd_level() == SimdLevel::Avx2 {
            Q8Level::Avx2
        } else {
            Q8Level::Portable
        }
    })
}

/// Quantise `v` into `codes` and `scales` with the fastest kernel that gives the same bits.
fn quantize_rows(v: &[f32], codes: &mut [i8], scales: &mut [f32], level: Q8Level) {
    #[cfg(target_arch = "x86_64")]
    if level != Q8Level::Portable {
        // SAFETY: AVX2 and FMA were detected (every level above portable implies them); the slices
        // hold whole blocks, as `quantize_blocks` needs.
        unsafe { avx2::quantize_blocks(v, codes, scales) };
        return;
    }
    let _ = level;
    quantize_blocks(v, codes, scales);
}

/// A row-major `rows × cols` matrix of int8 codes with one scale per block of 32 columns.
#[derive(Debug, Clone)]
pub struct Q8Matrix {
    rows: usize,
    cols: usize,
    codes: Vec<i8>,
    scales: Scales,
}

/// The block scales: f32, or binary16 where every scale converts to it and back bit for bit
/// (a GGUF model's own f16 scales do). Half the bytes for the same products: the tied output head
/// of Gemma 3 270M reads ~10 MB less per token.
#[derive(Debug, Clone)]
enum Scales {
    F32(Vec<f32>),
    /// Each value is zero or a positive normal binary16 number (see [`to_f16`]).
    F16(Vec<u16>),
}

/// `s` as binary16 bits where that is exact: +0.0 or a positive normal number with at most 10
/// mantissa bits. Subnormal, negative and out-of-range values give `None`.
fn to_f16(s: f32) -> Option<u16> {
    let bits = s.to_bits();
    if bits == 0 {
        return Some(0);
    }
    let exponent = bits >> 23; // the sign bit is zero for the values accepted here
    if !(113..=142).contains(&exponent) || bits & 0x1fff != 0 {
        return None;
    }
    Some(((bits - 0x3800_0000) >> 13) as u16)
}

/// Whether binary16 scales convert with F16C here (not under `MCP_GEMMA_FORCE_SCALAR`).
fn f16c() -> bool {
    static F16C: OnceLock<bool> = OnceLock::new();
    *F16C.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            q8_level() != Q8Level::Portable && std::arch::is_x86_feature_detected!("f16c")
        }
        #[cfg(not(target_arch = "x86_64"))]
        false
    })
}

/// [`from_f16`] of each of `src` into `dst` (one length): F16C eight at a time where the CPU has
/// it (a row of the output head's scales is 20 of them, converted for every token), the same
/// values either way.
fn half_to_f32(src: &[u16], dst: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if f16c() {
        // SAFETY: F16C and AVX2 were detected (every level above portable implies AVX2); the
        // callers pass slices of one length.
        unsafe { avx2::f16_to_f32(src, dst) };
        return;
    }
    for (o, &h) in dst.iter_mut().zip(src) {
        *o = from_f16(h);
    }
}

/// The f32 value of bits made by [`to_f16`] (rebias the exponent, widen the mantissa).
#[inline]
fn from_f16(h: u16) -> f32 {
    let bits = (u32::from(h) << 13) + 0x3800_0000;
    f32::from_bits(if h == 0 { 0 } else { bits })
}

impl Scales {
    /// binary16 where every value converts exactly, else the f32 values as given.
    fn compact(values: Vec<f32>) -> Self {
        match values
            .iter()
            .map(|&s| to_f16(s))
            .collect::<Option<Vec<u16>>>()
        {
            Some(half) => Self::F16(half),
            None => Self::F32(values),
        }
    }

    fn nbytes(&self) -> usize {
        match self {
            Self::F32(v) => v.len() * std::mem::size_of::<f32>(),
            Self::F16(v) => v.len() * std::mem::size_of::<u16>(),
        }
    }

    /// Scales `[start, start + len)` as f32: borrowed, or converted into `buf` (which is only
    /// touched, and only needs room, where they are binary16).
    #[inline]
    fn range<'a>(&'a self, start: usize, len: usize, buf: &'a mut [f32]) -> &'a [f32] {
        match self {
            Self::F32(v) => &v[start..start + len],
            Self::F16(v) => {
                let out = &mut buf[..len];
                half_to_f32(&v[start..start + len], out);
                out
            }
        }
    }

    /// Room [`Scales::range`] needs for `len` scales: none for f32 (no allocation).
    fn scratch(&self, len: usize) -> Vec<f32> {
        match self {
            Self::F32(_) => Vec::new(),
            Self::F16(_) => vec![0f32; len],
        }
    }
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
            scales: Scales::compact(scales),
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
            scales: Scales::compact(scales),
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

    /// One scale per block of 32 codes, row-major (`rows × cols / 32`), as f32 whatever the
    /// storage.
    pub fn scales(&self) -> Vec<f32> {
        let mut out = vec![0f32; self.rows * self.cols / BLOCK];
        self.fill_scales(&mut out);
        out
    }

    /// [`Q8Matrix::scales`] written into `out` (`rows × cols / 32` values).
    pub fn scales_into(&self, out: &mut [f32]) -> CoreResult<()> {
        if out.len() != self.rows * self.cols / BLOCK {
            return Err(CoreError::internal("scales output has the wrong length"));
        }
        self.fill_scales(out);
        Ok(())
    }

    fn fill_scales(&self, out: &mut [f32]) {
        match &self.scales {
            Scales::F32(v) => out.copy_from_slice(v),
            Scales::F16(v) => half_to_f32(v, out),
        }
    }

    /// Whether the scales are held as binary16 (every one converted exactly).
    pub fn half_scales(&self) -> bool {
        matches!(self.scales, Scales::F16(_))
    }

    fn row_codes(&self, r: usize) -> &[i8] {
        &self.codes[r * self.cols..(r + 1) * self.cols]
    }

    /// Row `r`'s scales as f32 (`buf`: from [`Scales::scratch`], filled where they are binary16).
    fn row_scales<'a>(&'a self, r: usize, buf: &'a mut [f32]) -> &'a [f32] {
        let nb = self.cols / BLOCK;
        self.scales.range(r * nb, nb, buf)
    }

    /// Bytes held by codes and scales.
    pub fn nbytes(&self) -> usize {
        self.codes.len() + self.scales.nbytes()
    }

    /// Dequantised copies of rows `ids` into `out` (`ids.len() × cols`).
    pub fn gather(&self, ids: &[usize], out: &mut [f32]) -> CoreResult<()> {
        if out.len() != ids.len() * self.cols {
            return Err(CoreError::internal("gather output has the wrong length"));
        }
        let mut buf = self.scales.scratch(self.cols / BLOCK);
        for (&id, dst) in ids.iter().zip(out.chunks_exact_mut(self.cols)) {
            if id >= self.rows {
                return Err(CoreError::invalid(format!(
                    "row {id} is out of range for a matrix of {} rows",
                    self.rows
                )));
            }
            let codes = &self.codes[id * self.cols..(id + 1) * self.cols];
            let scales = self.row_scales(id, &mut buf);
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
        self.matmul_with(x, m, out, q8_level())
    }

    /// [`Q8Matrix::matmul`] with the kernels of `level` (which the CPU must support: the tests
    /// compare the levels this machine has).
    pub(crate) fn matmul_with(
        &self,
        x: &[f32],
        m: usize,
        out: &mut [f32],
        level: Q8Level,
    ) -> CoreResult<()> {
        matmul_stacked_with(&[self], x, m, out, level)
    }

    /// Rows `[r0, r1)` of this matrix against the quantised inputs: `out[t · stride + offset + r]`
    /// for each input t. Every (row, input) pair's bits depend only on `m` (see
    /// [`PROMPT_INPUTS`]), not on the range or on the kernel, so any cut gives the same products.
    fn rows_into(
        &self,
        inp: &Inputs,
        r0: usize,
        r1: usize,
        dst: OutPtr,
        stride: usize,
        offset: usize,
    ) {
        let (m, cols, rows) = (inp.m, self.cols, self.rows);
        let nb = cols / BLOCK;
        let (xq, xs) = (&inp.xq, &inp.xs);
        let put = |t: usize, r: usize, v: f32| {
            debug_assert!(t < m && r < rows);
            // SAFETY: t < m and r < rows index inside `out` (m rows of `stride` values, this
            // matrix's rows at `offset`); each (t, r) is written by exactly one task, the one
            // owning row r.
            unsafe { *dst.get().add(t * stride + offset + r) = v }
        };
        let mut buf = self.scales.scratch(nb);
        if m < PROMPT_INPUTS {
            let avx2 = inp.level != Q8Level::Portable;
            for r in r0..r1 {
                let (wc, ws) = (self.row_codes(r), self.row_scales(r, &mut buf));
                for t in 0..m {
                    let (qc, qs) = (&xq[t * cols..(t + 1) * cols], &xs[t * nb..(t + 1) * nb]);
                    put(t, r, row_dot(wc, ws, qc, qs, avx2));
                }
            }
            return;
        }
        #[cfg(all(target_arch = "x86_64", q8_avx512))]
        if let Some(v) = &inp.vnni {
            self.rows_vnni(inp, v, r0, r1, dst.offset(offset), stride);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if !inp.x16.is_empty() {
            self.rows_avx2_packed(inp, r0, r1, dst.offset(offset), stride);
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if inp.level != Q8Level::Portable {
            // Two weight rows by four inputs per pass: each loaded block feeds eight products. A
            // short last pass repeats its last row or input and drops those results.
            let mut buf1 = self.scales.scratch(nb);
            for r in (r0..r1).step_by(2) {
                let r_1 = (r + 1).min(r1 - 1);
                let ws = [
                    self.row_scales(r, &mut buf),
                    self.row_scales(r_1, &mut buf1),
                ];
                let w = [self.row_codes(r).as_ptr(), self.row_codes(r_1).as_ptr()];
                for (g, sx4) in inp.sx4.chunks_exact(4 * nb).enumerate() {
                    let q = std::array::from_fn(|j| xq[(4 * g + j).min(m - 1) * cols..].as_ptr());
                    // SAFETY: AVX2 and FMA were detected (every level above portable implies
                    // them); each row and input holds `cols = 32 · nb` codes, each row `nb`
                    // scales, and `sx4` is this group's `4 · nb` input scales.
                    let v = unsafe { avx2::tile_2x4_exact(w, ws, q, sx4, nb) };
                    for j in 0..4.min(m - 4 * g) {
                        put(4 * g + j, r, v[j]);
                        if r_1 > r {
                            put(4 * g + j, r_1, v[4 + j]);
                        }
                    }
                }
            }
            return;
        }
        for r in r0..r1 {
            let (wc, ws) = (self.row_codes(r), self.row_scales(r, &mut buf));
            for t in 0..m {
                let (qc, qs) = (&xq[t * cols..(t + 1) * cols], &xs[t * nb..(t + 1) * nb]);
                put(t, r, portable_block_fma(wc, ws, qc, qs));
            }
        }
    }

    /// The scales of rows `r..r + valid` block-major into `sw` (`group` per block, a short group
    /// repeating its last row), as the packed kernels read them. `buf`: [`Scales::scratch`].
    #[cfg(target_arch = "x86_64")]
    fn group_scales(&self, r: usize, valid: usize, group: usize, buf: &mut [f32], sw: &mut [f32]) {
        for i in 0..group {
            let s = self.row_scales(r + i.min(valid - 1), buf);
            for (b, &x) in s.iter().enumerate() {
                sw[b * group + i] = x;
            }
        }
    }

    /// [`Q8Matrix::rows_into`] on the packed AVX2 kernel: groups of eight rows packed once (a
    /// short last group repeats its last row and stores only its own lanes), then four inputs per
    /// pass and the rest two and one at a time. `dst` points at row 0 of this matrix in output
    /// row 0.
    #[cfg(target_arch = "x86_64")]
    fn rows_avx2_packed(&self, inp: &Inputs, r0: usize, r1: usize, dst: OutPtr, stride: usize) {
        use avx2::GROUP;
        let (m, cols) = (inp.m, self.cols);
        let nb = cols / BLOCK;
        let mut pw = vec![0i16; GROUP * cols];
        let mut sw = vec![0f32; GROUP * nb];
        let mut buf = self.scales.scratch(nb);
        let mut r = r0;
        while r < r1 {
            let valid = (r1 - r).min(GROUP);
            let offsets: [usize; GROUP] = std::array::from_fn(|i| i.min(valid - 1) * cols);
            // SAFETY: AVX2 and FMA were detected (`x16` is only made then); rows r..r + valid
            // hold `cols` codes each from `r · cols`, and `pw` holds 8 · cols values.
            unsafe { avx2::pack(self.codes[r * cols..].as_ptr(), &offsets, cols, &mut pw) };
            self.group_scales(r, valid, GROUP, &mut buf, &mut sw);
            let mut t = 0;
            while t < m {
                let n = match m - t {
                    4.. => 4,
                    2..=3 => 2,
                    _ => 1,
                };
                let run = match n {
                    4 => avx2::packed_tile::<4>,
                    2 => avx2::packed_tile::<2>,
                    _ => avx2::packed_tile::<1>,
                };
                let (xq, xs) = (inp.x16[t * cols..].as_ptr(), inp.xs[t * nb..].as_ptr());
                // SAFETY: output row t, this matrix's row r: inside `out` (t < m, r < rows).
                let out = unsafe { dst.get().add(t * stride + r) };
                // SAFETY: the features as above; inputs t..t + n lie inside the `m × cols`
                // values and `m × nb` scales; rows r..r + valid of output rows t..t + n are
                // this task's to write.
                unsafe { run(&pw, &sw, nb, xq, xs, out, stride, valid) };
                t += n;
            }
            r += valid;
        }
    }

    /// [`Q8Matrix::rows_into`] on the AVX-512 VNNI kernel: groups of sixteen rows packed once
    /// (a short last group repeats its last row and stores only its own lanes), then eight
    /// inputs per pass and the rest four, two and one at a time. `dst` points at row 0 of this
    /// matrix in output row 0.
    #[cfg(all(target_arch = "x86_64", q8_avx512))]
    fn rows_vnni(&self, inp: &Inputs, v: &Vnni, r0: usize, r1: usize, dst: OutPtr, stride: usize) {
        use avx512::GROUP;
        let (m, cols) = (inp.m, self.cols);
        let nb = cols / BLOCK;
        let mut pw = vec![0u8; GROUP * cols];
        let mut sw = vec![0f32; GROUP * nb];
        let mut buf = self.scales.scratch(nb);
        let mut r = r0;
        while r < r1 {
            let valid = (r1 - r).min(GROUP);
            let offsets: [i32; GROUP] = std::array::from_fn(|i| (i.min(valid - 1) * cols) as i32);
            // SAFETY: AVX-512 F/BW/VL/VNNI were detected (`Vnni::prepare`); rows r..r + valid
            // hold `cols` codes each from `r · cols`, and `pw` holds 16 · cols bytes.
            unsafe { avx512::pack(self.codes[r * cols..].as_ptr(), &offsets, cols, &mut pw) };
            self.group_scales(r, valid, GROUP, &mut buf, &mut sw);
            let mask = (u32::MAX >> (32 - valid)) as u16;
            let mut t = 0;
            while t < m {
                let ptrs = (
                    inp.xq[t * cols..].as_ptr(),
                    inp.xs[t * nb..].as_ptr(),
                    v.xc[t * nb..].as_ptr(),
                    // SAFETY: output row t, this matrix's row r: inside `out` (t < m, r < rows).
                    unsafe { dst.get().add(t * stride + r) },
                );
                let n = match m - t {
                    8.. => 8,
                    4..=7 => 4,
                    2..=3 => 2,
                    _ => 1,
                };
                let run = match n {
                    8 => avx512::tile::<8>,
                    4 => avx512::tile::<4>,
                    2 => avx512::tile::<2>,
                    _ => avx512::tile::<1>,
                };
                // SAFETY: the features as above; inputs t..t + n lie inside the `m × cols` codes,
                // `m × nb` scales and corrections; rows r..r + valid (the mask's lanes) of
                // output rows t..t + n are this task's to write.
                unsafe { run(&pw, &sw, nb, ptrs.0, ptrs.1, ptrs.2, ptrs.3, stride, mask) };
                t += n;
            }
            r += valid;
        }
    }
}

/// `x · [W₀; W₁; …]ᵀ`: the product of `m` input rows with matrices of one column count stacked by
/// rows (a tall matrix held in blocks, as the tied output head is), into `out` (`m × Σ rows`).
/// One parallel section for all of them, each input quantised once; every row's value is the one
/// its own matrix's [`Q8Matrix::matmul`] gives, bit for bit (the same kernel on the same ranges).
pub fn matmul_stacked(mats: &[&Q8Matrix], x: &[f32], m: usize, out: &mut [f32]) -> CoreResult<()> {
    matmul_stacked_with(mats, x, m, out, q8_level())
}

/// The quantised inputs of one product.
struct Inputs {
    m: usize,
    xq: Vec<i8>,
    xs: Vec<f32>,
    /// For the AVX2 prompt tile: the scales of each group of four inputs block-major (input j's
    /// scale of block b at `4b + j` of its group's `4 · nb`), a short last group repeating its
    /// last input. Empty where that tile does not run.
    sx4: Vec<f32>,
    /// For the packed AVX2 kernel: the codes widened to i16. Empty where it does not run.
    x16: Vec<i16>,
    vnni: Option<Vnni>,
    level: Q8Level,
}

fn matmul_stacked_with(
    mats: &[&Q8Matrix],
    x: &[f32],
    m: usize,
    out: &mut [f32],
    level: Q8Level,
) -> CoreResult<()> {
    let Some(first) = mats.first() else {
        return Err(CoreError::invalid(
            "a stacked product needs at least one matrix",
        ));
    };
    let cols = first.cols;
    if let Some(other) = mats.iter().find(|w| w.cols != cols) {
        return Err(CoreError::invalid(format!(
            "stacked matrices must have one column count, got {cols} and {}",
            other.cols
        )));
    }
    if x.len() != m * cols {
        return Err(CoreError::invalid(format!(
            "input has {} values; expected {m} rows of {cols} columns",
            x.len()
        )));
    }
    let total: usize = mats.iter().map(|w| w.rows).sum();
    if out.len() != m * total {
        return Err(CoreError::internal("matmul output has the wrong length"));
    }
    if m == 0 {
        return Ok(());
    }
    if let Some(pos) = x.iter().position(|v| !v.is_finite()) {
        return Err(CoreError::invalid(format!(
            "input value at row {}, column {} is not finite",
            pos / cols,
            pos % cols
        )));
    }
    let nb = cols / BLOCK;
    let mut xq = vec![0i8; m * cols];
    let mut xs = vec![0f32; m * nb];
    let quantize_rows =
        |((row, c), s): ((&[f32], &mut [i8]), &mut [f32])| quantize_rows(row, c, s, level);
    if m >= 16 {
        x.par_chunks_exact(cols)
            .zip(xq.par_chunks_exact_mut(cols))
            .zip(xs.par_chunks_exact_mut(nb))
            .for_each(quantize_rows);
    } else {
        x.chunks_exact(cols)
            .zip(xq.chunks_exact_mut(cols))
            .zip(xs.chunks_exact_mut(nb))
            .for_each(quantize_rows);
    }
    let vnni = Vnni::prepare(level, &xq, m);
    // A prompt's product on the AVX2 kernels: packed from AVX2_PACK_MIN_INPUTS inputs, else the
    // 2×4 tile.
    let avx2_prompt = m >= PROMPT_INPUTS && level != Q8Level::Portable && vnni.is_none();
    let packed_avx2 = avx2_prompt && m >= AVX2_PACK_MIN_INPUTS;
    let x16 = if packed_avx2 {
        xq.iter().map(|&v| i16::from(v)).collect()
    } else {
        Vec::new()
    };
    let sx4 = if avx2_prompt && !packed_avx2 {
        let mut sx4 = vec![0f32; m.div_ceil(4) * 4 * nb];
        for (g, group) in sx4.chunks_exact_mut(4 * nb).enumerate() {
            for (b, four) in group.chunks_exact_mut(4).enumerate() {
                for (j, s) in four.iter_mut().enumerate() {
                    *s = xs[(4 * g + j).min(m - 1) * nb + b];
                }
            }
        }
        sx4
    } else {
        Vec::new()
    };
    let inp = Inputs {
        m,
        xq,
        xs,
        sx4,
        x16,
        vnni,
        level,
    };
    // Tasks own disjoint weight-row ranges of one matrix; for several inputs each task writes
    // those columns of every output row, through a raw pointer (the ranges never overlap).
    // Each matrix is cut as its own product would cut it.
    let mut tasks = Vec::new();
    let mut offset = 0;
    for (i, w) in mats.iter().enumerate() {
        // Whole VNNI groups of sixteen rows (only a matrix's last group is short).
        let chunk = chunk_rows(w.rows, cols * m)
            .next_multiple_of(16)
            .min(w.rows);
        tasks.extend(
            (0..w.rows)
                .step_by(chunk)
                .map(|r0| (i, r0, (r0 + chunk).min(w.rows), offset)),
        );
        offset += w.rows;
    }
    let dst = OutPtr(out.as_mut_ptr());
    let work = |&(i, r0, r1, offset): &(usize, usize, usize, usize)| {
        mats[i].rows_into(&inp, r0, r1, dst, total, offset);
    };
    if total * cols * m < PARALLEL_MIN_WORK {
        tasks.iter().for_each(work);
    } else {
        // The caller takes its share (see `pool::share`): after a pause its woken workers may
        // share one CPU, and a decode step's first products waited on them.
        let helpers = rayon::current_num_threads();
        crate::pool::share(tasks.len(), helpers, || (), |_, t| work(&tasks[t]));
    }
    Ok(())
}

/// What the AVX-512 VNNI kernel needs of a product's inputs besides their codes and scales: each
/// block's correction `-128 Σ x` (see `avx512::corrections`). `None` where that kernel does not
/// run (another level, or fewer than [`VNNI_MIN_INPUTS`] inputs).
struct Vnni {
    #[cfg(all(target_arch = "x86_64", q8_avx512))]
    xc: Vec<i32>,
}

impl Vnni {
    fn prepare(level: Q8Level, xq: &[i8], m: usize) -> Option<Self> {
        #[cfg(all(target_arch = "x86_64", q8_avx512))]
        if level == Q8Level::Avx512Vnni && m >= VNNI_MIN_INPUTS {
            let mut xc = vec![0i32; xq.len() / BLOCK];
            avx512::corrections(xq, &mut xc);
            return Some(Self { xc });
        }
        let _ = (level, xq, m);
        None
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

    /// The pointer `n` values further on (inside the same buffer).
    #[cfg(target_arch = "x86_64")]
    fn offset(self, n: usize) -> Self {
        Self(self.0.wrapping_add(n))
    }
}

/// Rows per parallel task: enough work to amortise scheduling, enough tasks to balance threads.
fn chunk_rows(rows: usize, work_per_row: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let by_balance = rows.div_ceil(threads * 8);
    let by_work = (1 << 16) / work_per_row.max(1);
    by_balance.max(by_work).clamp(1, rows)
}
