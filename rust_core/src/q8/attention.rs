//! Causal grouped-query attention of the int8 decoder's rows (a prompt's, or a decode step's one)
//! against its KV cache (Gemma 3: no logit soft-capping, a query scale of
//! `query_pre_attn_scalar^-0.5`, and a sliding window on the local layers).
//!
//! Why here and not numpy: numpy runs the two products of a prompt's attention as BLAS calls on
//! one thread, with the masked scores materialised for every head; this splits heads' query rows
//! across the pool and computes only the scores a row can see (plus the rest of its 3-row tile).
//!
//! Arithmetic, in a fixed order that does not depend on the number of threads:
//! the query is scaled in f32 first (as the numpy decoder does), each score is an f32 dot product
//! ([`crate::vector::simd::dot_block`]: eight-lane FMA accumulators where AVX2 runs), the softmax
//! subtracts the row maximum and sums the f32 exponentials in f64, and the output adds
//! `p_j · v_j` over the keys in position order in f32 (fused multiply-adds where AVX2 runs).

use rayon::prelude::*;

use crate::errors::{CoreError, CoreResult};
use crate::vector::simd::dot_block;

/// Query rows per task (and per score tile: a multiple of the three queries `dot_block` pairs).
const ROWS_PER_TASK: usize = 6;
/// Below this many multiply-adds (scores and output) the call runs on the calling thread.
const PARALLEL_MIN_WORK: usize = 1 << 18;

/// The sizes of an attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads; each serves `heads / kv_heads` consecutive query heads.
    pub kv_heads: usize,
    /// Values per head.
    pub head_dim: usize,
    /// Query rows (consecutive positions `start..start + n`).
    pub n: usize,
    /// Rows of the key and value caches per head (positions `0..capacity`).
    pub capacity: usize,
    /// Position of the first query row.
    pub start: usize,
    /// Keys a query sees, itself included (`None`: all earlier ones).
    pub window: Option<usize>,
}

impl AttentionShape {
    /// Bad input as a clear error: every size positive, heads a multiple of kv_heads, the query
    /// positions inside the cache.
    pub fn check(&self) -> CoreResult<()> {
        if self.heads == 0 || self.kv_heads == 0 || self.head_dim == 0 {
            return Err(CoreError::invalid(format!(
                "heads ({}), kv_heads ({}) and head_dim ({}) must be positive",
                self.heads, self.kv_heads, self.head_dim
            )));
        }
        if self.heads % self.kv_heads != 0 {
            return Err(CoreError::invalid(format!(
                "heads ({}) must be a multiple of kv_heads ({})",
                self.heads, self.kv_heads
            )));
        }
        if self.window == Some(0) {
            return Err(CoreError::invalid("window must be positive (or None)"));
        }
        if self.start + self.n > self.capacity {
            return Err(CoreError::invalid(format!(
                "query positions {}..{} do not fit a cache of {} positions",
                self.start,
                self.start + self.n,
                self.capacity
            )));
        }
        Ok(())
    }

    /// The oldest key position the query at `pos` sees.
    #[inline]
    fn first_key(&self, pos: usize) -> usize {
        self.window.map_or(0, |w| (pos + 1).saturating_sub(w))
    }

    /// Multiply-adds of the call (scores and output).
    pub fn work(&self) -> usize {
        let keys_seen: usize = (self.start..self.start + self.n)
            .map(|p| p + 1 - self.first_key(p))
            .sum();
        2 * keys_seen * self.heads * self.head_dim
    }

    /// Whether the call splits across the pool: more than one task, and enough work for the
    /// hand-off (a decode step's single row never does).
    pub fn parallel(&self) -> bool {
        self.n > ROWS_PER_TASK && self.work() >= PARALLEL_MIN_WORK
    }
}

/// `out[t, h·D..(h+1)·D] = softmax_j(scale · q[h, t] · k[g, j]) · v[g, j]` over the keys
/// `j ∈ [first_key(start + t), start + t]` of the key/value head `g = h / (heads / kv_heads)`.
///
/// `q` is `heads × n × head_dim`, `keys` and `values` are `kv_heads × capacity × head_dim` (rows
/// past `start + n` are not read) and `out` is `n × heads·head_dim`. Query-row blocks run in
/// parallel (all heads of a block in one task) when the call is large enough.
pub fn attention(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    shape: AttentionShape,
    scale: f32,
    out: &mut [f32],
) -> CoreResult<()> {
    shape.check()?;
    let AttentionShape {
        heads,
        kv_heads,
        head_dim: d,
        n,
        capacity,
        ..
    } = shape;
    if q.len() != heads * n * d {
        return Err(CoreError::invalid(format!(
            "q has {} values; expected {heads} heads × {n} rows × {d}",
            q.len()
        )));
    }
    for (name, cache) in [("keys", keys), ("values", values)] {
        if cache.len() != kv_heads * capacity * d {
            return Err(CoreError::invalid(format!(
                "{name} has {} values; expected {kv_heads} heads × {capacity} positions × {d}",
                cache.len()
            )));
        }
    }
    if !scale.is_finite() {
        return Err(CoreError::invalid(format!(
            "scale must be finite, got {scale}"
        )));
    }
    if out.len() != n * heads * d {
        return Err(CoreError::internal("attention output has the wrong length"));
    }
    if n == 0 {
        return Ok(());
    }
    let task = |(block, rows): (usize, &mut [f32])| {
        let t0 = block * ROWS_PER_TASK;
        attend_rows(q, keys, values, &shape, scale, t0, rows);
    };
    let blocks = out.chunks_mut(ROWS_PER_TASK * heads * d).enumerate();
    if !shape.parallel() {
        blocks.for_each(task);
    } else {
        out.par_chunks_mut(ROWS_PER_TASK * heads * d)
            .enumerate()
            .for_each(task);
    }
    Ok(())
}

/// Every head of the query rows `t0..t0 + rows` (`out` holds those rows, `heads · head_dim` each).
/// The query heads of one key/value head are scored together, so each key and value row is
/// loaded once per task.
fn attend_rows(
    q: &[f32],
    keys: &[f32],
    values: &[f32],
    shape: &AttentionShape,
    scale: f32,
    t0: usize,
    out: &mut [f32],
) {
    let (heads, d, n, cap) = (shape.heads, shape.head_dim, shape.n, shape.capacity);
    let group = heads / shape.kv_heads;
    let rows = out.len() / (heads * d);
    let (p0, p1) = (shape.start + t0, shape.start + t0 + rows); // query positions
    let (lo, hi) = (shape.first_key(p0), p1); // keys any of these rows sees
    let span = hi - lo;
    // (head within the group, row) pairs, head-major
    let mut qs = vec![0f32; group * rows * d];
    let mut scores = vec![0f32; group * rows * span];
    let mut acc = vec![0f32; group * rows * d];
    for g in 0..shape.kv_heads {
        for (i, dst) in qs.chunks_exact_mut(rows * d).enumerate() {
            let h = g * group + i;
            let src = &q[(h * n + t0) * d..(h * n + t0 + rows) * d];
            for (s, &x) in dst.iter_mut().zip(src) {
                *s = x * scale;
            }
        }
        let kv = g * cap * d;
        dot_block(&qs, &keys[kv + lo * d..kv + hi * d], d, &mut scores);
        // Each row's softmax over the keys it sees, in place; the rest of its tile is ignored.
        for (k, row) in scores.chunks_exact_mut(span).enumerate() {
            let pos = p0 + k % rows;
            let seen = &mut row[shape.first_key(pos) - lo..pos + 1 - lo];
            let max = seen.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f64;
            for s in seen.iter_mut() {
                *s = (*s - max).exp();
                sum += f64::from(*s);
            }
            let sum = sum as f32;
            for s in seen.iter_mut() {
                *s /= sum;
            }
            // keys this row does not see weigh exactly 0 (+0 · v leaves a sum's bits as they are)
            let (j0, j1) = (shape.first_key(pos) - lo, pos + 1 - lo);
            row[..j0].fill(0.0);
            row[j1..].fill(0.0);
        }
        acc.fill(0.0);
        weighted_sum(&scores, &values[kv + lo * d..kv + hi * d], d, &mut acc);
        for (k, a) in acc.chunks_exact(d).enumerate() {
            let (h, r) = (g * group + k / rows, k % rows);
            out[(r * heads + h) * d..(r * heads + h + 1) * d].copy_from_slice(a);
        }
    }
}

/// `acc[k] = Σ_j p[k, j] · v[j]` over the block's keys in key order (`acc` is zero on entry; the
/// keys a row does not see have `p = 0`). Where AVX2 runs, three (head, row) pairs by 32 columns
/// at a time, each value load feeding three FMAs; that 32-column slice of the value rows stays in
/// cache while every pair of the block passes over it.
fn weighted_sum(p: &[f32], v: &[f32], d: usize, acc: &mut [f32]) {
    let span = v.len() / d;
    #[cfg(target_arch = "x86_64")]
    if d % avx2::COLS == 0
        && crate::vector::simd::simd_level() == crate::vector::simd::SimdLevel::Avx2
    {
        let pairs = acc.len() / d;
        for c in (0..d).step_by(avx2::COLS) {
            let mut k = 0;
            while k < pairs {
                let take = (pairs - k).min(3);
                let (w, out) = (
                    &p[k * span..(k + take) * span],
                    &mut acc[k * d..(k + take) * d],
                );
                // SAFETY: AVX2 and FMA were detected; `w` holds `take` rows of `span` weights,
                // `v` holds `span` rows of `d` values, `out` `take` rows of `d`, and c + 32 <= d.
                unsafe {
                    match take {
                        3 => avx2::weighted_cols::<3>(w, v, d, c, out),
                        2 => avx2::weighted_cols::<2>(w, v, d, c, out),
                        _ => avx2::weighted_cols::<1>(w, v, d, c, out),
                    }
                };
                k += take;
            }
        }
        return;
    }
    for (w, a) in p.chunks_exact(span).zip(acc.chunks_exact_mut(d)) {
        for (&wj, vj) in w.iter().zip(v.chunks_exact(d)) {
            for (x, &y) in a.iter_mut().zip(vj) {
                *x += wj * y;
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// Columns per pass of [`weighted_cols`] (four registers per output row).
    pub(super) const COLS: usize = 32;

    /// For each of the `M` weight rows `i` of `w` (`span` weights each):
    /// `out[i][c..c + 32] = Σ_j w[i][j] · rows[j][c..c + 32]` (FMA, in j order), in registers
    /// (for M = 3: twelve accumulators, three broadcast weights, one value register).
    ///
    /// # Safety
    /// AVX2 and FMA are available; `rows.len() == span * d`, `w.len() == M * span`,
    /// `out.len() == M * d`, and `c + 32 <= d`.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    #[allow(clippy::needless_range_loop)] // a register tile: acc[i][q] by index keeps it unrolled
    pub(super) unsafe fn weighted_cols<const M: usize>(
        w: &[f32],
        rows: &[f32],
        d: usize,
        c: usize,
        out: &mut [f32],
    ) {
        let span = rows.len() / d;
        debug_assert!(w.len() == M * span && out.len() == M * d && c + COLS <= d);
        let (r, o, wp) = (rows.as_ptr(), out.as_mut_ptr(), w.as_ptr());
        let mut acc = [[_mm256_setzero_ps(); 4]; M];
        // SAFETY: offsets j · d + c + 31 < rows.len(), i · span + j < w.len() and
        // i · d + c + 31 < out.len() for i < M, j < span (the caller's bounds).
        unsafe {
            for j in 0..span {
                let base = r.add(j * d + c);
                let x: [__m256; M] = std::array::from_fn(|i| _mm256_set1_ps(*wp.add(i * span + j)));
                for q in 0..4 {
                    let v = _mm256_loadu_ps(base.add(8 * q));
                    for i in 0..M {
                        acc[i][q] = _mm256_fmadd_ps(x[i], v, acc[i][q]);
                    }
                }
            }
            for (i, a) in acc.iter().enumerate() {
                for (q, &ai) in a.iter().enumerate() {
                    _mm256_storeu_ps(o.add(i * d + c + 8 * q), ai);
                }
            }
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

    fn random(len: usize, seed: u64, amp: f32) -> Vec<f32> {
        let mut s = seed;
        (0..len).map(|_| lcg(&mut s) * amp).collect()
    }

    /// The definition in f64, one query at a time.
    fn naive(q: &[f32], k: &[f32], v: &[f32], s: AttentionShape, scale: f32) -> Vec<f64> {
        let (h_, d, n, cap) = (s.heads, s.head_dim, s.n, s.capacity);
        let group = h_ / s.kv_heads;
        let mut out = vec![0f64; n * h_ * d];
        for h in 0..h_ {
            let g = h / group;
            for t in 0..n {
                let pos = s.start + t;
                let lo = s.window.map_or(0, |w| (pos + 1).saturating_sub(w));
                let qv = &q[(h * n + t) * d..(h * n + t + 1) * d];
                let sc: Vec<f64> = (lo..=pos)
                    .map(|j| {
                        let kr = &k[(g * cap + j) * d..(g * cap + j + 1) * d];
                        qv.iter()
                            .zip(kr)
                            .map(|(&a, &b)| f64::from(a) * f64::from(scale) * f64::from(b))
                            .sum()
                    })
                    .collect();
                let max = sc.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = sc.iter().map(|x| (x - max).exp()).collect();
                let sum: f64 = e.iter().sum();
                for (j, w) in (lo..=pos).zip(&e) {
                    let vr = &v[(g * cap + j) * d..(g * cap + j + 1) * d];
                    for c in 0..d {
                        out[t * h_ * d + h * d + c] += w / sum * f64::from(vr[c]);
                    }
                }
            }
        }
        out
    }

    fn check(shape: AttentionShape, scale: f32) {
        let (h, kv, d, n, cap) = (
            shape.heads,
            shape.kv_heads,
            shape.head_dim,
            shape.n,
            shape.capacity,
        );
        let q = random(h * n * d, 1, 4.0);
        let k = random(kv * cap * d, 2, 4.0);
        let v = random(kv * cap * d, 3, 1.0);
        let mut out = vec![f32::NAN; n * h * d];
        attention(&q, &k, &v, shape, scale, &mut out).expect("attention");
        let want = naive(&q, &k, &v, shape, scale);
        let err = out
            .iter()
            .zip(&want)
            .map(|(&a, &b)| (f64::from(a) - b).abs())
            .fold(0.0, f64::max);
        assert!(err < 2e-6, "{shape:?}: max abs error {err}");
    }

    #[test]
    fn matches_the_definition() {
        let base = AttentionShape {
            heads: 4,
            kv_heads: 1,
            head_dim: 32,
            n: 17,
            capacity: 40,
            start: 0,
            window: None,
        };
        check(base, 0.125);
        // a later chunk of a prompt, a window shorter than it, several kv heads, odd sizes
        check(
            AttentionShape {
                start: 11,
                window: Some(5),
                ..base
            },
            0.125,
        );
        check(
            AttentionShape {
                heads: 6,
                kv_heads: 3,
                head_dim: 12,
                n: 1,
                start: 30,
                window: Some(8),
                ..base
            },
            0.3,
        );
        // large enough to run in parallel
        check(
            AttentionShape {
                heads: 4,
                kv_heads: 2,
                head_dim: 64,
                n: 70,
                capacity: 80,
                start: 3,
                window: Some(50),
            },
            0.125,
        );
    }

    #[test]
    fn bad_input_is_refused() {
        let ok = AttentionShape {
            heads: 2,
            kv_heads: 1,
            head_dim: 4,
            n: 2,
            capacity: 4,
            start: 0,
            window: None,
        };
        let (q, kv) = (vec![0f32; 16], vec![0f32; 16]);
        let mut out = vec![0f32; 16];
        assert!(attention(&q, &kv, &kv, ok, 1.0, &mut out).is_ok());
        let bad = [
            AttentionShape { heads: 3, ..ok },
            AttentionShape { kv_heads: 0, ..ok },
            AttentionShape {
                window: Some(0),
                ..ok
            },
            AttentionShape { start: 3, ..ok },
        ];
        for shape in bad {
            assert!(
                attention(&q, &kv, &kv, shape, 1.0, &mut out).is_err(),
                "{shape:?}"
            );
        }
        assert!(attention(&q[1..], &kv, &kv, ok, 1.0, &mut out).is_err());
        assert!(attention(&q, &kv[1..], &kv, ok, 1.0, &mut out).is_err());
        assert!(attention(&q, &kv, &kv, ok, f32::NAN, &mut out).is_err());
    }
}
