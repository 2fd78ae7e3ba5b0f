//! [`Bm25Index::to_bytes`] / [`Bm25Index::from_bytes`]: the postings as they are, so a restart
//! does not re-analyse every text (format in `crate::codec`).

use rustc_hash::FxHashMap as HashMap;

use super::Bm25Index;
use crate::codec::{Reader, Writer};
use crate::errors::{CoreError, CoreResult};
use crate::keyword::Analyzer;

const MAGIC: &[u8; 8] = b"MGBM25IX";
const VERSION: u32 = 1;

fn bad(field: &str, why: impl std::fmt::Display) -> CoreError {
    CoreError::invalid(format!("saved BM25Index is corrupt: {field}: {why}"))
}

impl Bm25Index {
    /// The whole index as bytes: parameters, vocabulary, postings (in their order, so scores and
    /// ties come out the same) and document slots.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut terms: Vec<&str> = vec![""; self.term_ids.len()];
        for (term, &t) in &self.term_ids {
            terms[t as usize] = term;
        }
        let entries: usize = self.postings.iter().map(Vec::len).sum();
        let text: usize = terms.iter().map(|t| t.len()).sum();
        let mut w = Writer::new(
            MAGIC,
            VERSION,
            64 + self.doc_id.len() * 12
                + self.free.len() * 4
                + terms.len() * 8
                + text
                + entries * 8,
        );
        w.put(self.k1);
        w.put(self.b);
        w.put(match self.analyzer {
            Analyzer::Plain => 0u8,
            Analyzer::English => 1,
        });
        w.count(self.doc_id.len());
        w.slice(&self.doc_id);
        w.slice(&self.doc_len);
        w.count(self.free.len());
        w.slice(&self.free);
        w.count(terms.len());
        let lens: Vec<u32> = terms.iter().map(|t| t.len() as u32).collect();
        w.slice(&lens);
        for t in &terms {
            w.bytes(t.as_bytes());
        }
        let counts: Vec<u32> = self.postings.iter().map(|p| p.len() as u32).collect();
        w.slice(&counts);
        let flat: Vec<u32> = self
            .postings
            .iter()
            .flat_map(|p| p.iter().flat_map(|&(slot, tf)| [slot, tf]))
            .collect();
        w.slice(&flat);
        w.finish()
    }

    /// An index saved by [`Bm25Index::to_bytes`]. Truncated, foreign or inconsistent input (a
    /// posting to a free or unknown slot, repeated ids or terms, lengths that do not add up) is an
    /// error.
    pub fn from_bytes(bytes: &[u8]) -> CoreResult<Self> {
        let mut r = Reader::open(bytes, MAGIC, VERSION, "BM25Index")?;
        let k1: f32 = r.get("k1")?;
        let b: f32 = r.get("b")?;
        let analyzer = match r.get::<u8>("analyzer")? {
            0 => Analyzer::Plain,
            1 => Analyzer::English,
            v => return Err(r.bad("analyzer", format!("unknown code {v}"))),
        };
        let slots = r.count("slots", u32::MAX as usize)?;
        let doc_id: Vec<u64> = r.slice(slots, "document ids")?;
        let doc_len: Vec<u32> = r.slice(slots, "document lengths")?;
        let n_free = r.count("free slots", slots)?;
        let free: Vec<u32> = r.slice(n_free, "free slots")?;
        let n_terms = r.count("terms", u32::MAX as usize)?;
        let lens: Vec<u32> = r.slice(n_terms, "term lengths")?;
        let mut terms = Vec::with_capacity(n_terms);
        for &len in &lens {
            let raw = r.bytes(len as usize, "terms")?;
            terms.push(std::str::from_utf8(raw).map_err(|e| r.bad("terms", e))?);
        }
        let counts: Vec<u32> = r.slice(n_terms, "posting counts")?;
        let entries = counts.iter().map(|&c| c as usize).sum::<usize>();
        let flat: Vec<u32> = r.slice(entries.saturating_mul(2), "postings")?;
        r.finish()?;

        let mut index = Self::with_analyzer(k1, b, analyzer).map_err(|e| bad("parameters", e))?;
        let mut live = vec![true; slots];
        for &s in &free {
            let l = live
                .get_mut(s as usize)
                .ok_or_else(|| bad("free slots", format!("slot {s} of {slots}")))?;
            if !*l {
                return Err(bad("free slots", format!("slot {s} is listed twice")));
            }
            *l = false;
        }
        let mut slot_of = HashMap::default();
        slot_of.reserve(slots - n_free);
        for (s, (&id, &is_live)) in doc_id.iter().zip(&live).enumerate() {
            if is_live && slot_of.insert(id, s as u32).is_some() {
                return Err(bad("document ids", format!("id {id} appears twice")));
            }
            if !is_live && doc_len[s] != 0 {
                return Err(bad(
                    "document lengths",
                    format!("free slot {s} has a length"),
                ));
            }
        }
        let mut term_ids = HashMap::default();
        term_ids.reserve(n_terms);
        for (t, term) in terms.into_iter().enumerate() {
            if term_ids.insert(term.to_owned(), t as u32).is_some() {
                return Err(bad("terms", format!("{term:?} appears twice")));
            }
        }
        // first pass: check every entry and count each document's terms, so each term list is
        // allocated once at its size (a million documents would otherwise grow theirs step by step)
        let mut held = vec![0u32; slots];
        let mut tokens = vec![0u64; slots];
        for pair in flat.chunks_exact(2) {
            let (slot, tf) = (pair[0], pair[1]);
            let s = slot as usize;
            if !live.get(s).copied().unwrap_or(false) || tf == 0 {
                return Err(bad("postings", format!("slot {slot}, tf {tf}")));
            }
            held[s] += 1;
            tokens[s] += u64::from(tf);
        }
        let mut doc_terms: Vec<Vec<u32>> = held
            .iter()
            .map(|&n| Vec::with_capacity(n as usize))
            .collect();
        let mut postings = Vec::with_capacity(n_terms);
        let mut at = 0usize;
        for (t, &count) in counts.iter().enumerate() {
            let pairs = &flat[at..at + 2 * count as usize];
            at += pairs.len();
            let mut p = Vec::with_capacity(count as usize);
            for pair in pairs.chunks_exact(2) {
                let (slot, tf) = (pair[0], pair[1]);
                let terms = &mut doc_terms[slot as usize];
                // postings are read term by term, so a repeat shows as the same term last
                if terms.last() == Some(&(t as u32)) {
                    return Err(bad("postings", format!("term {t} lists slot {slot} twice")));
                }
                terms.push(t as u32);
                p.push((slot, tf));
            }
            postings.push(p);
        }
        if let Some(s) = (0..slots).find(|&s| tokens[s] != u64::from(doc_len[s])) {
            return Err(bad(
                "document lengths",
                format!("slot {s} has length {} but {} terms", doc_len[s], tokens[s]),
            ));
        }
        index.live_terms = postings.iter().filter(|p| !p.is_empty()).count();
        index.total_len = tokens.iter().sum();
        index.term_ids = term_ids;
        index.postings = postings;
        index.slot_of = slot_of;
        index.doc_id = doc_id;
        index.doc_len = doc_len;
        index.doc_terms = doc_terms;
        index.free = free;
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CoreResult<Bm25Index> {
        let mut idx = Bm25Index::with_analyzer(1.1, 0.6, Analyzer::English)?;
        idx.add(1, "Tides follow the moon over the oceans");
        idx.add(2, "Glaciers carve valleys of ice");
        idx.add(3, "the moon and the tides of the sea");
        idx.add(4, "");
        idx.remove(2);
        Ok(idx)
    }

    #[test]
    fn round_trip_answers_the_same_and_keeps_changing_the_same() -> CoreResult<()> {
        let mut idx = sample()?;
        let mut back = Bm25Index::from_bytes(&idx.to_bytes())?;
        assert_eq!(back.to_bytes(), idx.to_bytes());
        assert_eq!(
            (back.k1(), back.b(), back.analyzer()),
            (1.1, 0.6, Analyzer::English)
        );
        assert_eq!(
            (back.len(), back.vocab_size()),
            (idx.len(), idx.vocab_size())
        );
        for q in ["moon tides", "ice", "sea of the moon", "nothing"] {
            assert_eq!(back.search(q, 5, None), idx.search(q, 5, None));
            assert_eq!(back.scores(q, &[1, 3, 4]), idx.scores(q, &[1, 3, 4]));
            assert_eq!(back.coverage(q, 3), idx.coverage(q, 3));
            assert_eq!(back.max_score(q), idx.max_score(q));
        }
        // the free slot is reused the same way, removals work on the restored postings
        for i in [&mut idx, &mut back] {
            i.add(5, "valleys of the sea");
            assert!(i.remove(1));
        }
        assert_eq!(
            back.search("sea moon", 5, None),
            idx.search("sea moon", 5, None)
        );
        assert_eq!(back.to_bytes(), idx.to_bytes());
        Ok(())
    }

    #[test]
    fn corrupt_input_is_rejected() -> CoreResult<()> {
        let bytes = sample()?.to_bytes();
        for cut in [0, 11, 13, 40, bytes.len() - 1] {
            assert!(
                Bm25Index::from_bytes(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut version = bytes.clone();
        version[8] = 2;
        assert!(Bm25Index::from_bytes(&version).is_err());
        // the last posting entry's slot (second to last u32) pointed past the slots
        let mut far = bytes.clone();
        let at = far.len() - 8;
        far[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
        let err = Bm25Index::from_bytes(&far).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("postings")), "{far:?}");
        // a tf changed: the document's length no longer adds up
        let mut tf = bytes.clone();
        let at = tf.len() - 4;
        tf[at..at + 4].copy_from_slice(&7u32.to_le_bytes());
        let err = Bm25Index::from_bytes(&tf).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("document lengths")));
        assert!(Bm25Index::from_bytes(
            &crate::vector::VectorIndex::new(2, crate::vector::Metric::Ip)?.to_bytes()
        )
        .is_err());
        Ok(())
    }
}
