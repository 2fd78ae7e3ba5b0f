//! Tokens are UAX #29 words (so CJK ideographs come out one by one, punctuation is dropped), lower-cased.
//!
//! Two analyzers turn a text into the terms BM25 indexes:
//! - [`Analyzer::Plain`]: the lower-cased words, nothing else.
//! - [`Analyzer::English`]: identifiers are also split into their parts (`snake_case`, `camelCase`,
//!   `os.path`: the whole word and each part are terms), English stop words are dropped and every
//!   term is reduced to its Snowball (Porter 2) stem, so "compressed files" meets "compress a file".

use std::sync::OnceLock;

use rustc_hash::FxHashSet as HashSet;
use unicode_segmentation::UnicodeSegmentation;

use super::stem::stem;
use crate::errors::{CoreError, CoreResult};

/// Lower-cased Unicode words of `text`.
pub fn tokenize(text: &str) -> Vec<String> {
    text.unicode_words().map(str::to_lowercase).collect()
}

/// How a text becomes index terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Analyzer {
    /// Lower-cased words.
    Plain,
    /// Words and identifier parts, English stop words dropped, Snowball-stemmed.
    English,
}

impl Analyzer {
    /// The analyzer called `name` ("plain" or "english").
    pub fn parse(name: &str) -> CoreResult<Self> {
        match name {
            "plain" => Ok(Self::Plain),
            "english" => Ok(Self::English),
            other => Err(CoreError::invalid(format!(
                "analyzer must be 'plain' or 'english', got {other:?}"
            ))),
        }
    }

    /// The analyzer's name, as [`Analyzer::parse`] takes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::English => "english",
        }
    }

    /// The terms of `text`, in order (a term may repeat).
    pub fn analyze(self, text: &str) -> Vec<String> {
        match self {
            Self::Plain => tokenize(text),
            Self::English => english(text),
        }
    }

    /// The terms of each of `texts`, in order: on rayon's threads once they hold
    /// [`PARALLEL_ANALYZE_BYTES`] or more, else on this one (a hand-off costs more than analysing a
    /// few short texts); the same terms either way.
    pub fn analyze_all<S: AsRef<str> + Sync>(self, texts: &[S]) -> Vec<Vec<String>> {
        let bytes: usize = texts.iter().map(|t| t.as_ref().len()).sum();
        if texts.len() > 1 && bytes >= PARALLEL_ANALYZE_BYTES {
            use rayon::prelude::*;
            texts.par_iter().map(|t| self.analyze(t.as_ref())).collect()
        } else {
            texts.iter().map(|t| self.analyze(t.as_ref())).collect()
        }
    }
}

/// Text bytes at or above which [`Analyzer::analyze_all`] shares the texts out over rayon's pool
/// (~16 KiB: a few hundred microseconds of analysis, well past a hand-off's cost).
pub const PARALLEL_ANALYZE_BYTES: usize = 16 * 1024;

/// Short, frequent English function words (Lucene's English list plus a few pronouns and auxiliaries).
const STOP_WORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did", "do",
    "does", "for", "from", "had", "has", "have", "he", "her", "his", "how", "i", "if", "in",
    "into", "is", "it", "its", "it's", "me", "my", "no", "not", "of", "on", "or", "our", "she",
    "so", "such", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this",
    "those", "to", "us", "was", "we", "were", "what", "when", "where", "which", "while", "who",
    "whom", "why", "will", "with", "would", "you", "your",
];

fn stop_words() -> &'static HashSet<&'static str> {
    static SET: OnceLock<HashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| STOP_WORDS.iter().copied().collect())
}

/// Parts of an identifier-like word: split at `_`, `.`, `-`, `'`-free boundaries, lower→upper case
/// changes (`parseHTTPResponse` → parse, http, response) and letter↔digit changes.
fn parts(word: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let chars: Vec<(usize, char)> = word.char_indices().collect();
    let mut start: Option<usize> = None;
    for (i, &(pos, c)) in chars.iter().enumerate() {
        if !c.is_alphanumeric() {
            if let Some(s) = start.take() {
                out.push(&word[s..pos]);
            }
            continue;
        }
        if let Some(s) = start {
            let (_, prev) = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|&(_, n)| n.is_lowercase());
            let boundary = (prev.is_lowercase() && c.is_uppercase())
                || (prev.is_uppercase() && c.is_uppercase() && next_lower)
                || (prev.is_alphabetic() && c.is_numeric())
                || (prev.is_numeric() && c.is_alphabetic());
            if boundary {
                out.push(&word[s..pos]);
                start = Some(pos);
            }
        } else {
            start = Some(pos);
        }
    }
    if let Some(s) = start {
        out.push(&word[s..]);
    }
    out
}

fn push_term(out: &mut Vec<String>, lower: &str) {
    if lower.is_empty() || stop_words().contains(lower) {
        return;
    }
    out.push(stem(lower));
}

fn english(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for word in text.unicode_words() {
        let lower = word.to_lowercase();
        push_term(&mut out, &lower);
        let pieces = parts(word);
        if pieces.len() > 1 {
            for piece in pieces {
                push_term(&mut out, &piece.to_lowercase());
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn analyze_all_gives_the_same_terms_below_and_above_the_threshold() {
        let text = "Running tests quickly, the parsers' HTTPServer handled 3.5 GHz östlich. ";
        let few: Vec<String> = (0..3).map(|i| format!("{text} {i}")).collect();
        let many: Vec<String> = (0..(PARALLEL_ANALYZE_BYTES / text.len() + 2))
            .map(|i| format!("{text} {i}"))
            .collect();
        assert!(few.iter().map(String::len).sum::<usize>() < PARALLEL_ANALYZE_BYTES);
        assert!(many.iter().map(String::len).sum::<usize>() >= PARALLEL_ANALYZE_BYTES);
        for analyzer in [Analyzer::Plain, Analyzer::English] {
            for texts in [&few, &many] {
                let one_by_one: Vec<Vec<String>> =
                    texts.iter().map(|t| analyzer.analyze(t)).collect();
                assert_eq!(analyzer.analyze_all(texts), one_by_one);
            }
        }
        assert!(Analyzer::Plain.analyze_all::<&str>(&[]).is_empty());
    }

    #[test]
    fn words_are_lowercased_and_punctuation_dropped() {
        assert_eq!(
            tokenize("Hello, World! It's 3.5 GHz."),
            ["hello", "world", "it's", "3.5", "ghz"]
        );
        assert_eq!(tokenize("Grüße aus Köln"), ["grüße", "aus", "köln"]);
        assert_eq!(tokenize("東京都"), ["東", "京", "都"]);
        assert!(tokenize("  \n\t ").is_empty());
    }

    #[test]
    fn english_stems_and_drops_stop_words() {
        assert_eq!(
            Analyzer::English.analyze("The files were compressed by the Compressor"),
            ["file", "compress", "compressor"]
        );
        assert_eq!(
            Analyzer::English.analyze("compress a file"),
            ["compress", "file"]
        );
    }

    #[test]
    fn english_splits_identifiers_and_keeps_the_whole() {
        assert_eq!(
            Analyzer::English.analyze("os.path.join_paths"),
            ["os.path.join_path", "os", "path", "join", "path"]
        );
        assert_eq!(
            Analyzer::English.analyze("parseHTTPResponse v2"),
            [
                "parsehttprespons",
                "pars",
                "http",
                "respons",
                "v2",
                "v",
                "2"
            ]
        );
        assert_eq!(Analyzer::English.analyze("東京"), ["東", "京"]);
    }

    #[test]
    fn analyzer_names_round_trip() -> CoreResult<()> {
        for a in [Analyzer::Plain, Analyzer::English] {
            assert_eq!(Analyzer::parse(a.name())?, a);
        }
        assert!(Analyzer::parse("klingon").is_err());
        Ok(())
    }
}
