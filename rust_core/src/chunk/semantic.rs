//! Sentence-mode chunking: each chunk is the longest run of the largest semantic units that fits.
//!
//! The semantic levels, from the largest: runs of line breaks (a run of n line breaks is level n, and
//! `\r\n` counts once), then Unicode sentences, words and extended grapheme clusters (UAX #29, from
//! `unicode-segmentation`), then code points. At each chunk start the chunker takes the highest
//! line-break level whose first section from there fits in `max_chars`; below that, the highest of
//! sentence, word, grapheme and code point whose first unit fits. It then puts as many consecutive
//! sections of that level into the chunk as fit. With an overlap, the next chunk starts at the earliest
//! section boundary of the chunk (past its start) whose tail has at most `overlap` code points, or at
//! the chunk's end when none has. A chunk that would end where an earlier one ended is skipped.
//!
//! These are the rules of the `text-splitter` crate (0.33, characters as the size, trimming off),
//! which this module replaced to drop the ICU segmenter crates from the build; its tests compare the
//! two boundary for boundary. They differ only where a chunk falls back to word units inside Han,
//! kana or the South-East Asian scripts (Thai, Lao, Khmer, Myanmar, Tai Le, New Tai Lue, Tai Tham,
//! Tai Viet, Ahom): ICU's word segmenter splits those into dictionary words, UAX #29 (here) into single
//! ideographs or whole runs. On random texts without those scripts the two agree on every chunk.
//!
//! Offsets here are bytes; `super` converts them to code points.

use std::collections::BTreeMap;

use unicode_segmentation::UnicodeSegmentation;

/// A maximal run of `\n` / `\r` bytes.
#[derive(Debug, Clone, Copy)]
struct Run {
    start: usize,
    end: usize,
    /// Line breaks in the run: its code points, with each `\r\n` counted once.
    level: usize,
}

fn line_break_runs(text: &str) -> Vec<Run> {
    let bytes = text.as_bytes();
    let mut runs = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\n' && bytes[i] != b'\r' {
            i += 1;
            continue;
        }
        let start = i;
        let mut level = 0;
        while i < bytes.len() && (bytes[i] == b'\n' || bytes[i] == b'\r') {
            if bytes[i] == b'\r' && bytes.get(i + 1) == Some(&b'\n') {
                i += 2;
            } else {
                i += 1;
            }
            level += 1;
        }
        runs.push(Run {
            start,
            end: i,
            level,
        });
    }
    runs
}

/// The units below the line-break levels, smallest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    CodePoint,
    Grapheme,
    Word,
    Sentence,
}

impl Unit {
    /// Byte length of the first unit of a non-empty `text`.
    fn first_len(self, text: &str) -> usize {
        let first = match self {
            Self::CodePoint => text.chars().next().map(char::len_utf8),
            Self::Grapheme => text.graphemes(true).next().map(str::len),
            Self::Word => text.split_word_bounds().next().map(str::len),
            Self::Sentence => text.split_sentence_bounds().next().map(str::len),
        };
        first.unwrap_or(text.len())
    }
}

/// The sections of one chunk: [start, end) byte offsets and their code-point counts.
struct Sections {
    max_chars: usize,
    chars: usize,
    items: Vec<(usize, usize, usize)>,
}

impl Sections {
    /// Adds the section `text[start..end]` if the chunk still fits in `max_chars` with it (or if it is
    /// the chunk's first, which the level choice makes fit); returns whether the chunk can grow.
    fn push(&mut self, text: &str, start: usize, end: usize) -> bool {
        let n = text[start..end].chars().count();
        if self.chars + n > self.max_chars && !self.items.is_empty() {
            return false;
        }
        self.chars += n;
        self.items.push((start, end, n));
        self.chars < self.max_chars
    }
}

/// [start, end) byte offsets of the chunks of a non-empty `text`.
pub(super) fn chunk_bytes(text: &str, max_chars: usize, overlap: usize) -> Vec<(usize, usize)> {
    let runs = line_break_runs(text);
    let mut last_start_of_level: BTreeMap<usize, usize> = BTreeMap::new();
    for run in &runs {
        last_start_of_level.insert(run.level, run.start);
    }
    let mut out = Vec::new();
    let mut sections = Sections {
        max_chars,
        chars: 0,
        items: Vec::new(),
    };
    let mut cursor = 0;
    let mut next_run = 0;
    let mut prev_end = 0;
    while cursor < text.len() {
        while next_run < runs.len() && runs[next_run].start < cursor {
            next_run += 1;
        }
        sections.chars = 0;
        sections.items.clear();
        let ahead = &runs[next_run..];
        match line_level(text, ahead, cursor, max_chars, &last_start_of_level) {
            Some(level) => fill_line_sections(text, ahead, cursor, level, &mut sections),
            None => fill_unit_sections(text, cursor, max_chars, &mut sections),
        }
        let end = sections.items.last().map_or(text.len(), |s| s.1);
        if end > prev_end {
            out.push((cursor, end));
            prev_end = end;
        }
        cursor = next_start(&sections.items, end, overlap);
    }
    out
}

/// The highest line-break level whose first section from `cursor` fits, if any. `ahead` are the runs
/// that start at or after `cursor`.
fn line_level(
    text: &str,
    ahead: &[Run],
    cursor: usize,
    max_chars: usize,
    last_start_of_level: &BTreeMap<usize, usize>,
) -> Option<usize> {
    let first = ahead.first()?;
    // Every level up to `reach` has a first section that fits. A level's first section is the run at
    // the cursor when that run is of the level or above, else the text up to the first run that is.
    let mut reach = 0;
    let mut rest = ahead;
    if first.start == cursor {
        if text[first.start..first.end].chars().count() > max_chars {
            return None;
        }
        reach = first.level;
        rest = &ahead[1..];
    }
    let mut chars = 0;
    let mut pos = cursor;
    let mut all_fit = true;
    for run in rest {
        chars += text[pos..run.start].chars().count();
        pos = run.start;
        if chars > max_chars {
            all_fit = false;
            break;
        }
        reach = reach.max(run.level);
    }
    if all_fit && chars + text[pos..].chars().count() <= max_chars {
        reach = usize::MAX;
    }
    last_start_of_level
        .range(..=reach)
        .rev()
        .find(|&(_, &start)| start >= cursor)
        .map(|(&level, _)| level)
}

/// Sections of the text from `cursor`, split at (and including) the runs of `level` or above.
fn fill_line_sections(
    text: &str,
    ahead: &[Run],
    cursor: usize,
    level: usize,
    sections: &mut Sections,
) {
    let mut pos = cursor;
    for run in ahead.iter().filter(|r| r.level >= level) {
        if run.start > pos && !sections.push(text, pos, run.start) {
            return;
        }
        if !sections.push(text, run.start, run.end) {
            return;
        }
        pos = run.end;
    }
    if pos < text.len() {
        sections.push(text, pos, text.len());
    }
}

/// Sections of the text from `cursor` in the largest unit whose first one fits.
fn fill_unit_sections(text: &str, cursor: usize, max_chars: usize, sections: &mut Sections) {
    let rest = &text[cursor..];
    // From the smallest unit up; a unit whose first one is no longer than the previous unit's
    // replaces it (the same text, or, when a word runs past a sentence end, the shorter sentence).
    let mut candidates: Vec<(Unit, usize)> = Vec::with_capacity(4);
    for unit in [Unit::CodePoint, Unit::Grapheme, Unit::Word, Unit::Sentence] {
        let len = unit.first_len(rest);
        match candidates.last_mut() {
            Some(last) if last.1 >= len => *last = (unit, len),
            _ => candidates.push((unit, len)),
        }
    }
    let mut unit = Unit::CodePoint;
    for (candidate, len) in candidates {
        if len > max_chars && rest[..len].chars().count() > max_chars {
            break;
        }
        unit = candidate;
    }
    let mut add = |offset: usize, piece: &str| {
        let start = cursor + offset;
        sections.push(text, start, start + piece.len())
    };
    match unit {
        Unit::CodePoint => {
            for (i, c) in rest.char_indices() {
                if !add(i, &rest[i..i + c.len_utf8()]) {
                    return;
                }
            }
        }
        Unit::Grapheme => {
            for (i, g) in rest.grapheme_indices(true) {
                if !add(i, g) {
                    return;
                }
            }
        }
        Unit::Word => {
            for (i, w) in rest.split_word_bound_indices() {
                if !add(i, w) {
                    return;
                }
            }
        }
        Unit::Sentence => {
            for (i, s) in rest.split_sentence_bound_indices() {
                if !add(i, s) {
                    return;
                }
            }
        }
    }
}

/// Where the chunk after one of `sections` (ending at `end`) starts.
fn next_start(sections: &[(usize, usize, usize)], end: usize, overlap: usize) -> usize {
    let mut start = end;
    let mut tail = 0;
    for &(s, _, n) in sections.iter().skip(1).rev() {
        tail += n;
        if tail > overlap {
            break;
        }
        start = s;
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use text_splitter::{ChunkConfig, TextSplitter};

    /// `text-splitter`'s chunks as [start, end) byte offsets.
    fn reference(text: &str, max_chars: usize, overlap: usize) -> Vec<(usize, usize)> {
        let config = ChunkConfig::new(max_chars)
            .with_overlap(overlap)
            .expect("overlap < max_chars")
            .with_trim(false);
        TextSplitter::new(config)
            .chunk_indices(text)
            .map(|(start, chunk)| (start, start + chunk.len()))
            .collect()
    }

    fn ours(text: &str, max_chars: usize, overlap: usize) -> Vec<(usize, usize)> {
        if text.is_empty() {
            Vec::new()
        } else {
            chunk_bytes(text, max_chars, overlap)
        }
    }

    /// The repository's own prose, Markdown and JSON.
    fn corpus() -> Vec<(String, String)> {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut paths = vec![
            root.join("README.md"),
            root.join("ARCHITECTURE.md"),
            root.join("benches/README.md"),
        ];
        for dir in ["docs", "benches/data"] {
            let mut more: Vec<_> = std::fs::read_dir(root.join(dir))
                .expect("corpus folder")
                .map(|e| e.expect("dir entry").path())
                .filter(|p| p.extension().is_some_and(|x| x == "md" || x == "json"))
                .collect();
            more.sort();
            paths.extend(more);
        }
        paths
            .into_iter()
            .map(|p| {
                let text = std::fs::read_to_string(&p).expect("corpus file");
                (p.display().to_string(), text)
            })
            .collect()
    }

    #[test]
    fn same_boundaries_as_text_splitter_on_the_repository_docs_at_the_default_sizes() {
        for (name, text) in corpus() {
            for (max_chars, overlap) in [(800, 100), (120, 20)] {
                assert_eq!(
                    ours(&text, max_chars, overlap),
                    reference(&text, max_chars, overlap),
                    "{name} max {max_chars} overlap {overlap}"
                );
            }
        }
    }

    #[test]
    #[ignore = "wide sweep, a minute in a debug build; run with --release -- --ignored"]
    fn agreement_with_text_splitter_over_the_repository_docs() {
        let mut same = 0;
        let mut total = 0;
        for (name, text) in corpus() {
            for max_chars in [20, 50, 80, 120, 200, 300, 400, 600, 800, 1000, 1200, 2000] {
                for overlap in [0, 1, 10, max_chars / 8, max_chars / 4, max_chars / 2] {
                    let (a, b) = (
                        ours(&text, max_chars, overlap),
                        reference(&text, max_chars, overlap),
                    );
                    total += 1;
                    if a == b {
                        same += 1;
                    } else {
                        let i = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
                        eprintln!(
                            "{name} max {max_chars} overlap {overlap}: chunk {i}: ours {:?} theirs {:?} ({:?})",
                            a.get(i),
                            b.get(i),
                            b.get(i).map(|r| &text[r.0..r.1])
                        );
                    }
                }
            }
        }
        eprintln!("same boundaries in {same} of {total} (file, max_chars, overlap) settings");
        assert_eq!(same, total);
    }

    /// Texts of ASCII words and punctuation, accented Latin, Greek and Cyrillic, emoji, and line
    /// breaks (`\n`, `\r\n`, `\r` and runs of them).
    fn alphabetic_text() -> impl Strategy<Value = String> {
        proptest::collection::vec(
            prop_oneof![
                4 => "[a-zA-Z]{1,12}",
                3 => Just(" ".to_string()),
                1 => "[.!?,;:'\"()-]",
                1 => "[0-9]{1,4}([.,][0-9]{1,3})?",
                1 => "(\n|\r\n|\r){1,4}",
                1 => "[àéîõüçñßÆØ]{1,5}",
                1 => "[α-ωΑ-Ω]{1,8}|[а-яА-Я]{1,8}",
                1 => "👩‍👩‍👧‍👦|🇫🇷|👍🏽|e\u{301}|\t| {2,5}",
                1 => "(Mr|Dr|e\\.g|U\\.S)\\. [A-Z][a-z]{1,6}",
            ],
            0..120,
        )
        .prop_map(|parts| parts.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]
        #[test]
        fn same_boundaries_as_text_splitter(
            text in alphabetic_text(),
            max_chars in 1usize..120,
            overlap_frac in 0.0f64..1.0,
        ) {
            let overlap = (((max_chars as f64) * overlap_frac) as usize).min(max_chars - 1);
            prop_assert_eq!(ours(&text, max_chars, overlap), reference(&text, max_chars, overlap));
        }
    }

    /// Texts of random non-control code points, with `extra` mixed in, and chunk settings.
    fn agreement_rate(extra: &str, cases: usize) -> (usize, usize) {
        use proptest::strategy::ValueTree;
        use proptest::test_runner::TestRunner;
        let pattern = format!("([\\PC&&[^\\p{{Han}}\\p{{Hiragana}}\\p{{Katakana}}\\p{{Thai}}\\p{{Lao}}\\p{{Khmer}}\\p{{Myanmar}}\\p{{Tai_Le}}\\p{{New_Tai_Lue}}\\p{{Tai_Tham}}\\p{{Tai_Viet}}\\p{{Ahom}}]]|[ .!?\\n]|é|👩‍👩‍👧‍👦{extra}){{0,300}}");
        let strategy = (pattern.as_str(), 1usize..120, 0.0f64..1.0);
        let mut runner = TestRunner::deterministic();
        let mut same = 0;
        let mut shown = 0;
        for _ in 0..cases {
            let (text, max_chars, frac) = strategy.new_tree(&mut runner).expect("tree").current();
            let overlap = (((max_chars as f64) * frac) as usize).min(max_chars - 1);
            let (a, b) = (
                ours(&text, max_chars, overlap),
                reference(&text, max_chars, overlap),
            );
            if a == b {
                same += 1;
            } else if shown < 5 {
                shown += 1;
                let i = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
                let piece = |r: Option<&(usize, usize)>| r.map(|r| text[r.0..r.1].to_string());
                eprintln!(
                    "max {max_chars} overlap {overlap}: chunk {i}: ours {:?} theirs {:?}",
                    piece(a.get(i)),
                    piece(b.get(i))
                );
            }
        }
        (same, cases)
    }

    #[test]
    #[ignore = "measurement: agreement rates on random Unicode; run with --release -- --ignored"]
    fn agreement_with_text_splitter_on_random_unicode() {
        let (same, total) = agreement_rate("", 20_000);
        eprintln!("without Han, kana and the South-East Asian scripts: same for {same} of {total}");
        let (same, total) = agreement_rate("|東京|日本語の文章です。|ภาษาไทย", 20_000);
        eprintln!("with Japanese and Thai words mixed in: same for {same} of {total}");
    }
}
