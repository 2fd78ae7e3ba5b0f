//! Symmetric int8 scalar quantisation with one scale per vector, and the int8 scan.

use super::scan::{scan_topk, BLOCK_ROWS};
use super::simd;
use super::topk::Hit;

/// Largest code magnitude; ±127 keeps the AVX2 `maddubs` path free of saturation.
const QMAX: f32 = 127.0;

/// Quantises `v` into `codes` and returns the scale (`v ≈ scale · codes`).
pub fn quantize_into(v: &[f32], codes: &mut [i8]) -> f32 {
    let max = v.iter().fold(0.0f32, |m, x| m.max(x.abs()));
    if max == 0.0 || !max.is_finite() {
        codes.fill(0);
        return 0.0;
    }
    let inv = QMAX / max;
    for (c, &x) in codes.iter_mut().zip(v) {
        // The clamp makes the cast exact; `as` saturates anyway.
        *c = (x * inv).round().clamp(-QMAX, QMAX) as i8;
    }
    max / QMAX
}

/// int8 codes of many rows with their scales.
#[derive(Debug, Clone, Default)]
pub struct QuantStore {
    /// `n × dim` codes.
    pub codes: Vec<i8>,
    /// One scale per row.
    pub scales: Vec<f32>,
}

impl QuantStore {
    /// Quantises every row of `rows`.
    pub fn from_rows(rows: &[f32], dim: usize) -> Self {
        let mut s = Self::default();
        super::storage::reserve(&mut s.codes, rows.len());
        for row in rows.chunks_exact(dim) {
            s.push(row, dim);
        }
        s
    }

    /// Appends one row.
    pub fn push(&mut self, row: &[f32], dim: usize) {
        let at = self.codes.len();
        self.codes.resize(at + dim, 0);
        let scale = quantize_into(row, &mut self.codes[at..]);
        self.scales.push(scale);
    }

    /// Overwrites row `slot`.
    pub fn set(&mut self, slot: usize, row: &[f32], dim: usize) {
        self.scales[slot] = quantize_into(row, &mut self.codes[slot * dim..(slot + 1) * dim]);
    }

    /// Moves the last row into `slot` and drops the last row (swap-remove).
    pub fn swap_remove(&mut self, slot: usize, dim: usize) {
        let last = self.scales.len() - 1;
        if slot != last {
            self.codes
                .copy_within(last * dim..(last + 1) * dim, slot * dim);
        }
        self.codes.truncate(last * dim);
        self.scales.swap_remove(slot);
    }

    /// Bytes held.
    pub fn nbytes(&self) -> usize {
        self.codes.len() + self.scales.len() * 4
    }

    /// Approximate inner-product top-`k` of `query` (f32, quantised here), over all rows or the
    /// `positions` subset (then returned positions index `positions`).
    pub fn topk(
        &self,
        dim: usize,
        query: &[f32],
        k: usize,
        positions: Option<&[usize]>,
    ) -> Vec<Hit> {
        let mut q = vec![0i8; dim];
        let qscale = quantize_into(query, &mut q);
        let scorer = |start: usize, out: &mut [f32]| {
            let mut ints = [0i32; BLOCK_ROWS];
            let ints = &mut ints[..out.len()];
            match positions {
                None => {
                    simd::dot_rows_i8(
                        &q,
                        &self.codes[start * dim..(start + out.len()) * dim],
                        dim,
                        ints,
                    );
                    for ((o, &i), &s) in out.iter_mut().zip(ints.iter()).zip(&self.scales[start..])
                    {
                        *o = i as f32 * s * qscale;
                    }
                }
                Some(pos) => {
                    for (o, &p) in out.iter_mut().zip(&pos[start..]) {
                        let mut one = [0i32];
                        simd::dot_rows_i8(&q, &self.codes[p * dim..(p + 1) * dim], dim, &mut one);
                        *o = one[0] as f32 * self.scales[p] * qscale;
                    }
                }
            }
        };
        let n = positions.map_or(self.scales.len(), <[usize]>::len);
        scan_topk(n, k, dim / 4 + 1, &scorer)
    }
}

/// `n` pseudo-random int8 codes in -127..=127 (both ends included), from an LCG on `seed`: the int8
/// kernels' tests compare kernels on them.
#[cfg(test)]
pub(crate) fn random_codes(seed: &mut u64, n: usize) -> Vec<i8> {
    (0..n)
        .map(|_| {
            *seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (((*seed >> 33) % 255) as i32 - 127) as i8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_error_is_within_half_a_step() {
        let v: Vec<f32> = (0..100)
            .map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0)
            .collect();
        let mut c = vec![0i8; 100];
        let s = quantize_into(&v, &mut c);
        for (x, &q) in v.iter().zip(&c) {
            assert!((x - s * f32::from(q)).abs() <= s * 0.5 + 1e-6);
        }
        assert!(c.iter().all(|&q| q >= -127));
    }

    #[test]
    fn zero_vector_has_zero_scale() {
        let mut c = vec![1i8; 4];
        assert_eq!(quantize_into(&[0.0; 4], &mut c), 0.0);
        assert_eq!(c, vec![0; 4]);
    }
}
