//! Text chunking with offsets in code points (what Python's `str` indexes), so `text[s:e]` is a chunk.
//!
//! Sentence mode (`semantic`) prefers line-break runs, then Unicode sentence, word and grapheme
//! boundaries, never splits a code point, and trims nothing, so the chunks tile the text. Chars mode
//! cuts fixed windows of code points.

mod semantic;

use crate::errors::{CoreError, CoreResult};

/// How to place chunk boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkMode {
    /// Prefer paragraph, then sentence, then word boundaries.
    Sentence,
    /// Fixed windows of `max_chars` code points.
    Chars,
}

impl ChunkMode {
    /// Parses `"sentence"` or `"chars"`.
    pub fn parse(s: &str) -> CoreResult<Self> {
        match s {
            "sentence" => Ok(Self::Sentence),
            "chars" => Ok(Self::Chars),
            other => Err(CoreError::invalid(format!(
                "mode must be 'sentence' or 'chars', got {other:?}"
            ))),
        }
    }
}

/// [start, end) code-point offsets of chunks of at most `max_chars` code points; consecutive chunks
/// share at most `overlap` code points and leave no gap.
pub fn chunk_text(
    text: &str,
    max_chars: usize,
    overlap: usize,
    mode: ChunkMode,
) -> CoreResult<Vec<(usize, usize)>> {
    if max_chars == 0 {
        return Err(CoreError::invalid("max_chars must be >= 1"));
    }
    if overlap >= max_chars {
        return Err(CoreError::invalid(format!(
            "overlap ({overlap}) must be smaller than max_chars ({max_chars})"
        )));
    }
    if text.is_empty() {
        return Ok(Vec::new());
    }
    match mode {
        ChunkMode::Chars => Ok(fixed_windows(text.chars().count(), max_chars, overlap)),
        ChunkMode::Sentence => Ok(sentence_chunks(text, max_chars, overlap)),
    }
}

fn fixed_windows(len: usize, max_chars: usize, overlap: usize) -> Vec<(usize, usize)> {
    let step = max_chars - overlap;
    let mut out = Vec::with_capacity(len / step + 1);
    let mut start = 0;
    loop {
        let end = (start + max_chars).min(len);
        out.push((start, end));
        if end == len {
            return out;
        }
        start += step;
    }
}

/// Converts increasing byte offsets to code-point offsets without rescanning from the start.
struct CharCursor<'a> {
    text: &'a str,
    byte: usize,
    chars: usize,
}

impl CharCursor<'_> {
    fn char_offset(&mut self, byte: usize) -> usize {
        if byte < self.byte {
            self.byte = 0;
            self.chars = 0;
        }
        self.chars += self.text[self.byte..byte].chars().count();
        self.byte = byte;
        self.chars
    }
}

fn sentence_chunks(text: &str, max_chars: usize, overlap: usize) -> Vec<(usize, usize)> {
    let mut starts = CharCursor {
        text,
        byte: 0,
        chars: 0,
    };
    let mut ends = CharCursor {
        text,
        byte: 0,
        chars: 0,
    };
    let mut out: Vec<(usize, usize)> = Vec::new();
    for (byte_start, byte_end) in semantic::chunk_bytes(text, max_chars, overlap) {
        let s = starts.char_offset(byte_start);
        let e = ends.char_offset(byte_end);
        // A grapheme longer than max_chars (e.g. a long emoji ZWJ sequence) comes back whole; cut it
        // at code points so the size bound always holds.
        let mut a = s;
        while e - a > max_chars {
            out.push((a, a + max_chars));
            a += max_chars - overlap;
        }
        out.push((a, e));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn check_tiling(
        text: &str,
        chunks: &[(usize, usize)],
        max_chars: usize,
        overlap: usize,
    ) -> Result<(), String> {
        let len = text.chars().count();
        if len == 0 {
            return if chunks.is_empty() {
                Ok(())
            } else {
                Err("chunks for empty text".into())
            };
        }
        let first = chunks.first().ok_or("no chunks")?;
        let last = chunks.last().ok_or("no chunks")?;
        if first.0 != 0 || last.1 != len {
            return Err(format!(
                "chunks do not span the text: {chunks:?}, len {len}"
            ));
        }
        let chars: Vec<char> = text.chars().collect();
        let mut rebuilt = String::new();
        let mut covered = 0;
        for &(s, e) in chunks {
            if s >= e || e - s > max_chars {
                return Err(format!("bad chunk ({s}, {e}) for max {max_chars}"));
            }
            if s > covered || covered - s > overlap {
                return Err(format!(
                    "gap or too much overlap at ({s}, {e}), covered {covered}"
                ));
            }
            rebuilt.extend(&chars[covered.max(s)..e]);
            covered = covered.max(e);
        }
        if rebuilt != text {
            return Err("chunks minus overlap do not rebuild the text".into());
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        #[test]
        fn chunks_tile_random_unicode(
            text in "(\\PC|[ .!?\n]|👩‍👩‍👧‍👦|東京|é){0,400}",
            max_chars in 1usize..60,
            overlap_frac in 0.0f64..0.9,
            sentence in any::<bool>(),
        ) {
            let overlap = ((max_chars as f64) * overlap_frac) as usize;
            let overlap = overlap.min(max_chars - 1);
            let mode = if sentence { ChunkMode::Sentence } else { ChunkMode::Chars };
            let chunks = chunk_text(&text, max_chars, overlap, mode).map_err(|e| TestCaseError::fail(e.to_string()))?;
            check_tiling(&text, &chunks, max_chars, overlap).map_err(TestCaseError::fail)?;
        }
    }

    #[test]
    fn sentence_mode_prefers_sentence_ends() -> CoreResult<()> {
        let text = "One short sentence. Another one here. And a third one!";
        let chunks = chunk_text(text, 40, 0, ChunkMode::Sentence)?;
        let first: String = text.chars().take(chunks[0].1).collect();
        assert!(first.trim_end().ends_with('.'), "{first:?}");
        Ok(())
    }

    #[test]
    fn sentence_mode_takes_the_largest_units_that_fit() -> CoreResult<()> {
        let text = "Some text\n\nfrom a\ndocument";
        // The paragraph break and the line break are sections of their own; the last line is one
        // sentence. With an overlap of 3 the fourth chunk starts at the line break (1 code point).
        assert_eq!(
            chunk_text(text, 10, 0, ChunkMode::Sentence)?,
            [(0, 9), (9, 11), (11, 18), (18, 26)]
        );
        assert_eq!(
            chunk_text(text, 10, 3, ChunkMode::Sentence)?,
            [(0, 9), (9, 11), (11, 18), (17, 26)]
        );
        // Code-point offsets, not bytes: "é" is two bytes.
        assert_eq!(
            chunk_text("Été là. Oui.", 8, 0, ChunkMode::Sentence)?,
            [(0, 8), (8, 12)]
        );
        Ok(())
    }

    #[test]
    fn rejects_bad_sizes() {
        assert!(chunk_text("abc", 0, 0, ChunkMode::Chars).is_err());
        assert!(chunk_text("abc", 3, 3, ChunkMode::Sentence).is_err());
        assert!(ChunkMode::parse("words").is_err());
    }
}
