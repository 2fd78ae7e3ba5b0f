//! A bounded min-heap that keeps the `k` best (score, position) pairs seen so far.
//!
//! Order: higher score first, then lower position, so results are deterministic. NaN scores rank
//! below every number.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One candidate: `score` of the row at `pos`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// Similarity (higher is better).
    pub score: f32,
    /// Row position in the scanned matrix (or candidate list).
    pub pos: usize,
}

impl Hit {
    /// "Better" compares greater: higher score, then lower position.
    fn rank_cmp(&self, other: &Self) -> Ordering {
        nan_low(self.score)
            .total_cmp(&nan_low(other.score))
            .then_with(|| other.pos.cmp(&self.pos))
    }
}

fn nan_low(x: f32) -> f32 {
    if x.is_nan() {
        f32::NEG_INFINITY
    } else {
        x
    }
}

/// Wrapper so `BinaryHeap` (a max-heap) keeps the *worst* kept hit on top.
#[derive(Debug, Clone, Copy)]
struct Worst(Hit);

impl PartialEq for Worst {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Worst {}
impl PartialOrd for Worst {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Worst {
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.rank_cmp(&self.0)
    }
}

/// Keeps the best `k` hits.
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Worst>,
    /// Score of the worst kept hit once full; anything not above it is skipped cheaply.
    floor: f32,
}

impl TopK {
    /// An empty collector for `k` hits.
    pub fn new(k: usize) -> Self {
        Self {
            k,
            heap: BinaryHeap::with_capacity(k + 1),
            floor: f32::NEG_INFINITY,
        }
    }

    /// Offers one hit.
    #[inline]
    pub fn push(&mut self, score: f32, pos: usize) {
        if self.heap.len() < self.k {
            self.heap.push(Worst(Hit { score, pos }));
            if self.heap.len() == self.k {
                self.floor = self
                    .heap
                    .peek()
                    .map_or(f32::NEG_INFINITY, |w| nan_low(w.0.score));
            }
        } else if score > self.floor {
            if let Some(mut top) = self.heap.peek_mut() {
                *top = Worst(Hit { score, pos });
            }
            self.floor = self
                .heap
                .peek()
                .map_or(f32::NEG_INFINITY, |w| nan_low(w.0.score));
        }
    }

    /// Offers a block of scores whose positions start at `offset`.
    #[inline]
    pub fn push_block(&mut self, scores: &[f32], offset: usize) {
        for (i, &s) in scores.iter().enumerate() {
            // Cheap reject first: most rows of a large scan fall below the floor.
            if s > self.floor || self.heap.len() < self.k {
                self.push(s, offset + i);
            }
        }
    }

    /// Adds every hit of another collector (used to merge per-thread results).
    pub fn merge(&mut self, other: TopK) {
        for w in other.heap {
            if self.heap.len() < self.k
                || w.0.rank_cmp(&self.heap.peek().map_or(w.0, |t| t.0)).is_gt()
            {
                self.push_exact(w.0);
            }
        }
    }

    fn push_exact(&mut self, hit: Hit) {
        self.heap.push(Worst(hit));
        if self.heap.len() > self.k {
            self.heap.pop();
        }
        if self.heap.len() == self.k {
            self.floor = self
                .heap
                .peek()
                .map_or(f32::NEG_INFINITY, |w| nan_low(w.0.score));
        }
    }

    /// The kept hits, best first.
    pub fn into_sorted(self) -> Vec<Hit> {
        let mut v: Vec<Hit> = self.heap.into_iter().map(|w| w.0).collect();
        v.sort_by(|a, b| b.rank_cmp(a));
        v
    }
}

/// Reference: sort everything and keep the best `k` (used by tests).
pub fn topk_reference(scores: &[f32], k: usize) -> Vec<Hit> {
    let mut v: Vec<Hit> = scores
        .iter()
        .enumerate()
        .map(|(pos, &score)| Hit { score, pos })
        .collect();
    v.sort_by(|a, b| b.rank_cmp(a));
    v.truncate(k);
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn heap_equals_full_sort(scores in proptest::collection::vec(-100i32..100, 0..300), k in 1usize..40) {
            let scores: Vec<f32> = scores.into_iter().map(|s| s as f32 / 7.0).collect();
            let mut t = TopK::new(k);
            t.push_block(&scores, 0);
            prop_assert_eq!(t.into_sorted(), topk_reference(&scores, k));
        }

        #[test]
        fn merge_equals_single_pass(scores in proptest::collection::vec(-50i32..50, 0..300), k in 1usize..20, cut in 0usize..300) {
            let scores: Vec<f32> = scores.into_iter().map(|s| s as f32).collect();
            let cut = cut.min(scores.len());
            let mut a = TopK::new(k);
            a.push_block(&scores[..cut], 0);
            let mut b = TopK::new(k);
            b.push_block(&scores[cut..], cut);
            a.merge(b);
            prop_assert_eq!(a.into_sorted(), topk_reference(&scores, k));
        }
    }

    #[test]
    fn nan_ranks_last() {
        let mut t = TopK::new(2);
        t.push_block(&[f32::NAN, 1.0, f32::NAN], 0);
        let got = t.into_sorted();
        assert_eq!(got[0].pos, 1);
        assert_eq!(got[1].pos, 0);
    }
}
