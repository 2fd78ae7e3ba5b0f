//! BM25 over an inverted index. Scores use the Lucene form of IDF, `ln(1 + (N - df + 0.5) / (df + 0.5))`,
//! which is never negative (rank-bm25's Okapi IDF goes negative for terms in over half the documents).
//! Query terms are summed with multiplicity, as rank-bm25 does. Texts and queries go through the
//! index's [`Analyzer`].

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

use super::Analyzer;
use crate::errors::{CoreError, CoreResult};
use crate::vector::topk::TopK;

mod persist;

/// Lucene's BM25 IDF of a term in `df` of `n` documents (never negative).
fn idf(n: f32, df: f32) -> f32 {
    (1.0 + (n - df + 0.5) / (df + 0.5)).ln()
}

/// BM25's per-term score with the index's parameters and length normalisation at one moment.
struct TermScorer {
    base: f32,
    per_len: f32,
    k1p1: f32,
}

impl TermScorer {
    fn score(&self, idf: f32, tf: u32, doc_len: u32) -> f32 {
        let tf = tf as f32;
        idf * tf * self.k1p1 / (tf + self.base + self.per_len * doc_len as f32)
    }
}

/// Documents keyed by u64 ids. Removal really deletes postings; freed slots are reused.
#[derive(Debug, Clone)]
pub struct Bm25Index {
    k1: f32,
    b: f32,
    analyzer: Analyzer,
    term_ids: HashMap<String, u32>,
    /// Per term: (doc slot, term frequency).
    postings: Vec<Vec<(u32, u32)>>,
    live_terms: usize,
    slot_of: HashMap<u64, u32>,
    doc_id: Vec<u64>,
    doc_len: Vec<u32>,
    /// Distinct terms of each live slot (empty for free slots), for removal.
    doc_terms: Vec<Vec<u32>>,
    free: Vec<u32>,
    total_len: u64,
}

impl Bm25Index {
    /// An empty index with the plain analyzer; `k1` >= 0 and `b` in [0, 1].
    pub fn new(k1: f32, b: f32) -> CoreResult<Self> {
        Self::with_analyzer(k1, b, Analyzer::Plain)
    }

    /// An empty index whose texts and queries go through `analyzer`.
    pub fn with_analyzer(k1: f32, b: f32, analyzer: Analyzer) -> CoreResult<Self> {
        if !(k1.is_finite() && k1 >= 0.0) {
            return Err(CoreError::invalid(format!(
                "k1 must be a finite number >= 0, got {k1}"
            )));
        }
        if !(0.0..=1.0).contains(&b) {
            return Err(CoreError::invalid(format!("b must be in [0, 1], got {b}")));
        }
        Ok(Self {
            k1,
            b,
            analyzer,
            term_ids: HashMap::default(),
            postings: Vec::new(),
            live_terms: 0,
            slot_of: HashMap::default(),
            doc_id: Vec::new(),
            doc_len: Vec::new(),
            doc_terms: Vec::new(),
            free: Vec::new(),
            total_len: 0,
        })
    }

    /// Term-frequency saturation.
    pub fn k1(&self) -> f32 {
        self.k1
    }

    /// Length normalisation.
    pub fn b(&self) -> f32 {
        self.b
    }

    /// How texts and queries become terms.
    pub fn analyzer(&self) -> Analyzer {
        self.analyzer
    }

    /// Number of documents.
    pub fn len(&self) -> usize {
        self.slot_of.len()
    }

    /// True when no document is indexed.
    pub fn is_empty(&self) -> bool {
        self.slot_of.is_empty()
    }

    /// Whether `id` is indexed.
    pub fn contains(&self, id: u64) -> bool {
        self.slot_of.contains_key(&id)
    }

    /// Distinct terms that occur in at least one document.
    pub fn vocab_size(&self) -> usize {
        self.live_terms
    }

    /// Indexes `text` under `id`, replacing any earlier text of that id.
    pub fn add(&mut self, id: u64, text: &str) {
        self.add_tokens(id, self.analyzer.analyze(text));
    }

    /// Indexes already analysed text (the terms of [`Bm25Index::analyzer`]).
    pub fn add_tokens(&mut self, id: u64, tokens: Vec<String>) {
        self.remove(id);
        let n_tokens = tokens.len();
        let mut counts: HashMap<u32, u32> = HashMap::default();
        for tok in tokens {
            let t = match self.term_ids.get(tok.as_str()) {
                Some(&t) => t,
                None => {
                    let t = self.term_ids.len() as u32;
                    self.term_ids.insert(tok, t);
                    self.postings.push(Vec::new());
                    t
                }
            };
            *counts.entry(t).or_insert(0) += 1;
        }
        let slot = match self.free.pop() {
            Some(s) => s,
            None => {
                self.doc_id.push(0);
                self.doc_len.push(0);
                self.doc_terms.push(Vec::new());
                (self.doc_id.len() - 1) as u32
            }
        };
        let s = slot as usize;
        self.doc_id[s] = id;
        self.doc_len[s] = n_tokens as u32;
        let mut terms = Vec::with_capacity(counts.len());
        for (t, tf) in counts {
            let p = &mut self.postings[t as usize];
            if p.is_empty() {
                self.live_terms += 1;
            }
            p.push((slot, tf));
            terms.push(t);
        }
        self.doc_terms[s] = terms;
        self.total_len += n_tokens as u64;
        self.slot_of.insert(id, slot);
    }

    /// Removes `id`; returns whether it was indexed.
    pub fn remove(&mut self, id: u64) -> bool {
        let Some(slot) = self.slot_of.remove(&id) else {
            return false;
        };
        let s = slot as usize;
        for t in std::mem::take(&mut self.doc_terms[s]) {
            let p = &mut self.postings[t as usize];
            if let Some(i) = p.iter().position(|&(d, _)| d == slot) {
                p.swap_remove(i);
            }
            if p.is_empty() {
                self.live_terms -= 1;
            }
        }
        self.total_len -= u64::from(self.doc_len[s]);
        self.doc_len[s] = 0;
        self.free.push(slot);
        true
    }

    /// The query's terms that occur in the index, with their IDF (repeated terms repeat).
    fn query_terms(&self, query: &str) -> Vec<(u32, f32)> {
        let n = self.len() as f32;
        self.analyzer
            .analyze(query)
            .into_iter()
            .filter_map(|tok| {
                let &t = self.term_ids.get(&tok)?;
                let df = self.postings[t as usize].len() as f32;
                (df > 0.0).then(|| (t, idf(n, df)))
            })
            .collect()
    }

    /// The per-term scoring of this index as it is now (its length normalisation depends on avgdl).
    fn scorer(&self) -> TermScorer {
        let avgdl = self.total_len as f32 / self.len().max(1) as f32;
        let norm_len = if avgdl > 0.0 { self.b / avgdl } else { 0.0 };
        TermScorer {
            base: self.k1 * (1.0 - self.b),
            per_len: self.k1 * norm_len,
            k1p1: self.k1 + 1.0,
        }
    }

    /// Best `k` (id, score) for `query`, optionally only among `allow`ed ids. Only documents sharing
    /// a term with the query are returned.
    pub fn search(&self, query: &str, k: usize, allow: Option<&[u64]>) -> Vec<(u64, f32)> {
        if self.is_empty() || k == 0 {
            return Vec::new();
        }
        let allowed: Option<HashSet<u32>> = allow.map(|ids| {
            ids.iter()
                .filter_map(|id| self.slot_of.get(id).copied())
                .collect()
        });
        let scorer = self.scorer();
        let mut acc = vec![0.0f32; self.doc_id.len()];
        let mut touched: Vec<u32> = Vec::new();
        for (t, idf) in self.query_terms(query) {
            for &(slot, tf) in &self.postings[t as usize] {
                let s = slot as usize;
                if acc[s] == 0.0 {
                    touched.push(slot);
                }
                acc[s] += scorer.score(idf, tf, self.doc_len[s]);
            }
        }
        let mut top = TopK::new(k);
        for slot in touched {
            if allowed.as_ref().is_none_or(|a| a.contains(&slot)) {
                top.push(acc[slot as usize], slot as usize);
            }
        }
        top.into_sorted()
            .into_iter()
            .map(|h| (self.doc_id[h.pos], h.score))
            .collect()
    }

    /// The BM25 score of `query` for each of `ids` (0 for an id that shares no term or is not
    /// indexed), in the order given: the keyword side of candidates another ranking found.
    pub fn scores(&self, query: &str, ids: &[u64]) -> Vec<f32> {
        let mut out = vec![0.0f32; ids.len()];
        if self.is_empty() || ids.is_empty() {
            return out;
        }
        let mut pos_of: HashMap<u32, Vec<usize>> = HashMap::default();
        for (i, id) in ids.iter().enumerate() {
            if let Some(&slot) = self.slot_of.get(id) {
                pos_of.entry(slot).or_default().push(i);
            }
        }
        let scorer = self.scorer();
        for (t, idf) in self.query_terms(query) {
            for &(slot, tf) in &self.postings[t as usize] {
                if let Some(positions) = pos_of.get(&slot) {
                    let w = scorer.score(idf, tf, self.doc_len[slot as usize]);
                    for &i in positions {
                        out[i] += w;
                    }
                }
            }
        }
        out
    }

    /// The distinct terms of `query` with their coverage weight: the term id where a document holds
    /// it, and its IDF in f64 (a term no document has weighs the highest IDF there is, `idf(n, 0)`).
    fn coverage_terms(&self, query: &str) -> Vec<(Option<u32>, f64)> {
        let n = self.len() as f64;
        let idf64 = |df: f64| (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        let mut seen: HashSet<String> = HashSet::default();
        let mut out = Vec::new();
        for tok in self.analyzer.analyze(query) {
            if seen.contains(&tok) {
                continue;
            }
            let held = self
                .term_ids
                .get(&tok)
                .copied()
                .filter(|&t| !self.postings[t as usize].is_empty());
            let df = held.map_or(0.0, |t| self.postings[t as usize].len() as f64);
            out.push((held, idf64(df)));
            seen.insert(tok);
        }
        out
    }

    /// The share of `query`'s IDF mass that document `id` contains: each distinct query term weighs
    /// its IDF (a term no document has weighs the highest IDF there is), and the terms `id` holds are
    /// summed over all. 1.0 when it has every term, 0.0 when it has none (or is not indexed, or the
    /// query has no term). Says how much of a query the best keyword hit explains.
    pub fn coverage(&self, query: &str, id: u64) -> f32 {
        self.coverage_many(query, &[id])[0] as f32
    }

    /// [`Bm25Index::coverage`] of each of `ids`, in the order given, computed in f64 (the IDF is
    /// BM25's, `ln(1 + (N - df + 0.5) / (df + 0.5))`, over the same analyzer). An id that is not
    /// indexed gets 0.0, as in [`Bm25Index::scores`]: a candidate deleted since another ranking found
    /// it holds none of the query. One pass over the query terms' postings, as `scores` makes.
    pub fn coverage_many(&self, query: &str, ids: &[u64]) -> Vec<f64> {
        let mut out = vec![0.0f64; ids.len()];
        if self.is_empty() || ids.is_empty() {
            return out;
        }
        let terms = self.coverage_terms(query);
        let total: f64 = terms.iter().map(|&(_, w)| w).sum();
        if total <= 0.0 {
            return out;
        }
        let mut pos_of: HashMap<u32, Vec<usize>> = HashMap::default();
        for (i, id) in ids.iter().enumerate() {
            if let Some(&slot) = self.slot_of.get(id) {
                pos_of.entry(slot).or_default().push(i);
            }
        }
        for (t, w) in terms {
            let Some(t) = t else { continue };
            for &(slot, _) in &self.postings[t as usize] {
                if let Some(positions) = pos_of.get(&slot) {
                    for &i in positions {
                        out[i] += w;
                    }
                }
            }
        }
        for v in &mut out {
            *v /= total;
        }
        out
    }

    /// An upper bound of any document's score for `query`: `Σ idf · (k1 + 1)` over its indexed terms
    /// (with multiplicity). Dividing by it puts scores on a scale that means the same for every query.
    pub fn max_score(&self, query: &str) -> f32 {
        let k1p1 = self.k1 + 1.0;
        self.query_terms(query)
            .iter()
            .map(|&(_, idf)| idf * k1p1)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bm25(tf: f32, df: f32, n: f32, dl: f32, avgdl: f32) -> f32 {
        let (k1, b) = (1.2, 0.75);
        let idf = (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        idf * tf * (k1 + 1.0) / (tf + k1 * (1.0 - b + b * dl / avgdl))
    }

    #[test]
    fn scores_match_the_formula() -> CoreResult<()> {
        let mut idx = Bm25Index::new(1.2, 0.75)?;
        idx.add(1, "the cat sat on the mat");
        idx.add(2, "the dog sat");
        idx.add(3, "cats and dogs");
        let avgdl = (6.0 + 3.0 + 3.0) / 3.0;
        let hits = idx.search("cat sat", 10, None);
        let want1 = bm25(1.0, 1.0, 3.0, 6.0, avgdl) + bm25(1.0, 2.0, 3.0, 6.0, avgdl);
        let want2 = bm25(1.0, 2.0, 3.0, 3.0, avgdl);
        assert_eq!(hits.len(), 2);
        assert_eq!(hits[0].0, 1);
        assert!((hits[0].1 - want1).abs() < 1e-5);
        assert_eq!(hits[1].0, 2);
        assert!((hits[1].1 - want2).abs() < 1e-5);
        Ok(())
    }

    #[test]
    fn upsert_remove_and_allow() -> CoreResult<()> {
        let mut idx = Bm25Index::new(1.2, 0.75)?;
        idx.add(1, "alpha beta");
        idx.add(2, "beta gamma");
        idx.add(1, "delta");
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.vocab_size(), 3);
        assert!(idx.search("alpha", 5, None).is_empty());
        assert_eq!(idx.search("beta delta", 5, Some(&[1]))[0].0, 1);
        assert!(idx.remove(2));
        assert!(!idx.remove(2));
        assert_eq!(idx.vocab_size(), 1);
        assert!(idx.search("beta", 5, None).is_empty());
        idx.add(3, "beta");
        assert_eq!(idx.search("beta", 5, None).len(), 1);
        Ok(())
    }

    #[test]
    fn scores_and_bound_agree_with_search() -> CoreResult<()> {
        let mut idx = Bm25Index::with_analyzer(1.2, 0.75, Analyzer::English)?;
        idx.add(1, "Compressed files are written by the compressor");
        idx.add(2, "a file of text");
        idx.add(3, "nothing in common");
        let hits = idx.search("compress a file", 10, None);
        assert_eq!(hits.iter().map(|h| h.0).collect::<Vec<_>>(), [1, 2]);
        let got = idx.scores("compress a file", &[2, 9, 1, 3, 1]);
        assert!((got[0] - hits[1].1).abs() < 1e-6);
        assert_eq!(got[1], 0.0);
        assert!((got[2] - hits[0].1).abs() < 1e-6);
        assert_eq!(got[3], 0.0);
        assert_eq!(got[2], got[4]);
        let bound = idx.max_score("compress a file");
        assert!(bound > hits[0].1);
        assert_eq!(idx.max_score("absent words"), 0.0);
        assert_eq!(idx.analyzer(), Analyzer::English);
        Ok(())
    }

    #[test]
    fn coverage_weighs_terms_by_idf() -> CoreResult<()> {
        let mut idx = Bm25Index::new(1.2, 0.75)?;
        idx.add(1, "rare common");
        idx.add(2, "common");
        idx.add(3, "common other");
        let n = 3.0f32;
        let idf = |df: f32| (1.0 + (n - df + 0.5) / (df + 0.5)).ln();
        assert!((idx.coverage("rare common common", 1) - 1.0).abs() < 1e-6);
        let want = idf(3.0) / (idf(1.0) + idf(3.0));
        assert!((idx.coverage("rare common", 2) - want).abs() < 1e-6);
        let unknown = idf(3.0) / (idf(0.0) + idf(3.0));
        assert!((idx.coverage("common unheard", 3) - unknown).abs() < 1e-6);
        assert_eq!(idx.coverage("rare", 9), 0.0);
        assert_eq!(idx.coverage("", 1), 0.0);
        Ok(())
    }

    #[test]
    fn coverage_many_is_the_idf_share_of_each_id() -> CoreResult<()> {
        let mut idx = Bm25Index::new(1.2, 0.75)?;
        idx.add(1, "rare common");
        idx.add(2, "common");
        idx.add(3, "common other other");
        idx.add(4, "rare");
        idx.remove(4);
        // N = 3; df(common) = 3, df(rare) = 1 (the removed id no longer counts), df(unheard) = 0.
        let idf = |df: f64| (1.0 + (3.0 - df + 0.5) / (df + 0.5)).ln();
        let (common, rare, unheard) = (idf(3.0), idf(1.0), idf(0.0));
        let total = common + rare + unheard;
        // Repeated query terms count once; unknown and removed ids get 0.
        let got = idx.coverage_many("rare common unheard rare", &[3, 1, 9, 2, 4, 1]);
        let want = [
            common / total,
            (rare + common) / total,
            0.0,
            common / total,
            0.0,
            (rare + common) / total,
        ];
        assert_eq!(got.len(), want.len());
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{g} != {w}");
        }
        // By hand: ln(1 + 0.5/3.5) = 0.133531, ln(1 + 2.5/1.5) = 0.980829, ln(1 + 3.5/0.5) = 2.079442.
        assert!((got[1] - (0.980829 + 0.133531) / (0.980829 + 0.133531 + 2.079442)).abs() < 1e-6);
        assert_eq!(idx.coverage("rare common unheard", 1), got[1] as f32);
        assert_eq!(idx.coverage_many("", &[1, 2]), [0.0, 0.0]);
        assert!(idx.coverage_many("rare", &[]).is_empty());
        assert_eq!(idx.coverage_many("rare", &[1])[0], 1.0);
        let empty = Bm25Index::new(1.2, 0.75)?;
        assert_eq!(empty.coverage_many("rare", &[1]), [0.0]);
        Ok(())
    }

    #[test]
    fn rejects_bad_parameters() {
        assert!(Bm25Index::new(-1.0, 0.5).is_err());
        assert!(Bm25Index::new(1.2, 1.5).is_err());
    }
}
