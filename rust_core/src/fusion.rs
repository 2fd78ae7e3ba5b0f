//! Score fusion for hybrid search: reciprocal rank fusion and min-max-normalised weighted sums.

use std::collections::HashMap;

use crate::errors::{CoreError, CoreResult};

fn sort_desc(mut v: Vec<(u64, f64)>) -> Vec<(u64, f64)> {
    v.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// Reciprocal rank fusion: `score(id) = Σ 1 / (k + rank)`, ranks from 1. An id repeated within one
/// ranking counts at its best rank only. Best first, ties by id.
pub fn rrf(rankings: &[Vec<u64>], k: f64, limit: Option<usize>) -> CoreResult<Vec<(u64, f64)>> {
    if !(k.is_finite() && k >= 0.0) {
        return Err(CoreError::invalid(format!(
            "k must be a finite number >= 0, got {k}"
        )));
    }
    let mut scores: HashMap<u64, f64> = HashMap::new();
    for ranking in rankings {
        let mut seen = std::collections::HashSet::with_capacity(ranking.len());
        for (rank, &id) in ranking.iter().enumerate() {
            if seen.insert(id) {
                *scores.entry(id).or_insert(0.0) += 1.0 / (k + rank as f64 + 1.0);
            }
        }
    }
    let mut out = sort_desc(scores.into_iter().collect());
    if let Some(l) = limit {
        out.truncate(l);
    }
    Ok(out)
}

fn min_max(list: &[(u64, f64)]) -> CoreResult<HashMap<u64, f64>> {
    if let Some((id, s)) = list.iter().find(|(_, s)| !s.is_finite()) {
        return Err(CoreError::invalid(format!(
            "score of id {id} is not finite ({s})"
        )));
    }
    let lo = list.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = list.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    let span = hi - lo;
    let mut out = HashMap::with_capacity(list.len());
    for &(id, s) in list {
        // A list whose scores are all equal carries no ordering; every entry counts fully.
        let v = if span > 0.0 { (s - lo) / span } else { 1.0 };
        let e = out.entry(id).or_insert(v);
        *e = f64::max(*e, v);
    }
    Ok(out)
}

/// `(1 - weight_b) · norm(a) + weight_b · norm(b)` with min-max normalisation of each list; an id
/// missing from one list scores 0 there. Best first, ties by id.
pub fn weighted(a: &[(u64, f64)], b: &[(u64, f64)], weight_b: f64) -> CoreResult<Vec<(u64, f64)>> {
    if !(0.0..=1.0).contains(&weight_b) {
        return Err(CoreError::invalid(format!(
            "weight_b must be in [0, 1], got {weight_b}"
        )));
    }
    let na = min_max(a)?;
    let nb = min_max(b)?;
    let mut out: HashMap<u64, f64> = na
        .iter()
        .map(|(&id, &s)| (id, (1.0 - weight_b) * s))
        .collect();
    for (id, s) in nb {
        *out.entry(id).or_insert(0.0) += weight_b * s;
    }
    Ok(sort_desc(out.into_iter().collect()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rrf_sums_reciprocal_ranks() -> CoreResult<()> {
        let got = rrf(&[vec![1, 2, 3], vec![3, 1]], 60.0, None)?;
        assert_eq!(got[0].0, 1);
        assert!((got[0].1 - (1.0 / 61.0 + 1.0 / 62.0)).abs() < 1e-12);
        assert_eq!(got[1].0, 3);
        assert_eq!(got[2].0, 2);
        assert_eq!(rrf(&[vec![5, 5, 6]], 0.0, Some(1))?, vec![(5, 1.0)]);
        Ok(())
    }

    #[test]
    fn weighted_normalises_each_list() -> CoreResult<()> {
        let got = weighted(&[(1, 10.0), (2, 0.0)], &[(2, 0.9), (3, 0.1)], 0.25)?;
        assert_eq!(got, vec![(1, 0.75), (2, 0.25), (3, 0.0)]);
        assert!(weighted(&[], &[], 1.5).is_err());
        assert!(weighted(&[(1, f64::NAN)], &[], 0.5).is_err());
        Ok(())
    }
}
