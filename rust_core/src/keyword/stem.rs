//! The English Snowball stemmer ("Porter 2", <https://snowballstem.org/algorithms/english/stemmer.html>),
//! written out by hand from the Snowball program `english.sbl` (the revision rust-stemmers 1.2
//! compiles, which this module replaced to drop its serde build chain; a test compares the two on
//! every word of the repository's texts and on generated words, so the BM25 index keeps its terms).
//!
//! The word is worked on as UTF-8 bytes with byte positions, as the Snowball runtime does: the
//! algorithm only reads and rewrites ASCII letters, a non-ASCII character is one non-vowel character
//! (the "hop" and "next" moves count characters, not bytes), and `y` turned consonant is `Y` while
//! the steps run.

/// Suffix tables: each list is ordered longest first, so the first entry that ends the word is the
/// longest one, which is the one Snowball's `among` picks (two entries of one length cannot both
/// end the same word).
const STEP_1B: &[(&str, u8)] = &[
    ("eedly", 1),
    ("ingly", 2),
    ("edly", 2),
    ("eed", 1),
    ("ing", 2),
    ("ed", 2),
];

/// Step 2 (in R1): the suffix and its replacement; `None` is a rule with a condition (`ogi`, `li`).
const STEP_2: &[(&str, Option<&str>)] = &[
    ("ational", Some("ate")),
    ("fulness", Some("ful")),
    ("iveness", Some("ive")),
    ("ization", Some("ize")),
    ("ousness", Some("ous")),
    ("biliti", Some("ble")),
    ("lessli", Some("less")),
    ("tional", Some("tion")),
    ("alism", Some("al")),
    ("aliti", Some("al")),
    ("ation", Some("ate")),
    ("entli", Some("ent")),
    ("fulli", Some("ful")),
    ("iviti", Some("ive")),
    ("ousli", Some("ous")),
    ("abli", Some("able")),
    ("alli", Some("al")),
    ("anci", Some("ance")),
    ("ator", Some("ate")),
    ("enci", Some("ence")),
    ("izer", Some("ize")),
    ("bli", Some("ble")),
    ("ogi", None),
    ("li", None),
];

/// Step 3 (in R1): the suffix and its replacement; `ative` is deleted only in R2.
const STEP_3: &[(&str, &str)] = &[
    ("ational", "ate"),
    ("tional", "tion"),
    ("alize", "al"),
    ("ative", ""),
    ("icate", "ic"),
    ("iciti", "ic"),
    ("ical", "ic"),
    ("ness", ""),
    ("ful", ""),
];

/// Step 4 (in R2): deleted suffixes; `ion` only after `s` or `t`.
const STEP_4: &[&str] = &[
    "ement", "able", "ance", "ence", "ible", "ment", "ant", "ate", "ent", "ion", "ism", "iti",
    "ive", "ize", "ous", "al", "er", "ic",
];

/// Whole words with a fixed stem (Snowball's `exception1`), looked up before anything else.
const EXCEPTIONS: &[(&str, &str)] = &[
    ("skis", "ski"),
    ("skies", "sky"),
    ("dying", "die"),
    ("lying", "lie"),
    ("tying", "tie"),
    ("idly", "idl"),
    ("gently", "gentl"),
    ("ugly", "ugli"),
    ("early", "earli"),
    ("only", "onli"),
    ("singly", "singl"),
    ("sky", "sky"),
    ("news", "news"),
    ("howe", "howe"),
    ("atlas", "atlas"),
    ("cosmos", "cosmos"),
    ("bias", "bias"),
    ("andes", "andes"),
];

/// Words left alone after step 1a (Snowball's `exception2`).
const INVARIANT_AFTER_1A: &[&str] = &[
    "inning", "outing", "canning", "herring", "earring", "proceed", "exceed", "succeed",
];

fn is_vowel(b: u8) -> bool {
    matches!(b, b'a' | b'e' | b'i' | b'o' | b'u' | b'y')
}

fn is_vowel_wxy(b: u8) -> bool {
    is_vowel(b) || matches!(b, b'w' | b'x' | b'Y')
}

fn is_valid_li(b: u8) -> bool {
    matches!(
        b,
        b'c' | b'd' | b'e' | b'g' | b'h' | b'k' | b'm' | b'n' | b'r' | b't'
    )
}

/// Start of the character that ends at byte `pos` (> 0).
fn char_before(b: &[u8], pos: usize) -> usize {
    let mut p = pos - 1;
    while p > 0 && b[p] & 0xC0 == 0x80 {
        p -= 1;
    }
    p
}

/// Byte just past the character that starts at `pos` (< len).
fn char_after(b: &[u8], pos: usize) -> usize {
    let mut p = pos + 1;
    while p < b.len() && b[p] & 0xC0 == 0x80 {
        p += 1;
    }
    p
}

/// The position just past the first vowel followed by a non-vowel at or after `from` (Snowball's
/// `gopast v gopast non-v`), if there is one.
fn past_vowel_then_consonant(b: &[u8], from: usize) -> Option<usize> {
    let mut p = from;
    while p < b.len() && !is_vowel(b[p]) {
        p = char_after(b, p);
    }
    if p >= b.len() {
        return None;
    }
    p += 1;
    while p < b.len() && is_vowel(b[p]) {
        p += 1;
    }
    (p < b.len()).then(|| char_after(b, p))
}

/// R1 and R2 start positions.
fn regions(b: &[u8]) -> (usize, usize) {
    let n = b.len();
    let p1 = match ["gener", "commun", "arsen"]
        .iter()
        .find(|p| b.starts_with(p.as_bytes()))
    {
        Some(prefix) => prefix.len(),
        None => match past_vowel_then_consonant(b, 0) {
            Some(p) => p,
            None => return (n, n),
        },
    };
    (p1, past_vowel_then_consonant(b, p1).unwrap_or(n))
}

/// Whether the word up to `pos` ends in a short syllable: a non-vowel other than w, x or Y after a
/// vowel after a non-vowel, or a vowel at the very start followed by a non-vowel.
fn ends_short_syllable(b: &[u8], pos: usize) -> bool {
    if pos < 2 {
        return false;
    }
    let last = char_before(b, pos);
    if last == 0 || !is_vowel(b[last - 1]) {
        return false;
    }
    let vowel = last - 1;
    (vowel > 0 && !is_vowel_wxy(b[last]) && !is_vowel(b[char_before(b, vowel)]))
        || (vowel == 0 && !is_vowel(b[last]))
}

fn step_1a(w: &mut String) {
    for apostrophe in ["'s'", "'s", "'"] {
        if w.ends_with(apostrophe) {
            w.truncate(w.len() - apostrophe.len());
            break;
        }
    }
    let n = w.len();
    if w.ends_with("sses") {
        w.truncate(n - 2);
    } else if w.ends_with("ied") || w.ends_with("ies") {
        let at = n - 3;
        let long = w[..at].chars().nth(1).is_some();
        w.replace_range(at.., if long { "i" } else { "ie" });
    } else if w.ends_with("us") || w.ends_with("ss") {
    } else if w.ends_with('s') && n > 1 {
        // A vowel somewhere before the letter that precedes the s.
        let b = w.as_bytes();
        if b[..char_before(b, n - 1)].iter().copied().any(is_vowel) {
            w.truncate(n - 1);
        }
    }
}

fn step_1b(w: &mut String, p1: usize) {
    let Some(&(suffix, rule)) = STEP_1B.iter().find(|(s, _)| w.ends_with(s)) else {
        return;
    };
    let at = w.len() - suffix.len();
    if rule == 1 {
        if at >= p1 {
            w.replace_range(at.., "ee");
        }
        return;
    }
    if !w.as_bytes()[..at].iter().copied().any(is_vowel) {
        return;
    }
    w.truncate(at);
    let b = w.as_bytes();
    if ["at", "bl", "iz"].iter().any(|s| b.ends_with(s.as_bytes())) {
        w.push('e');
    } else if at >= 2 && b[at - 1] == b[at - 2] && b"bdfgmnprt".contains(&b[at - 1]) {
        w.truncate(at - 1);
    } else if at == p1 && ends_short_syllable(b, at) {
        w.push('e');
    }
}

fn step_1c(w: &mut String) {
    let b = w.as_bytes();
    let n = b.len();
    if n < 2 || !matches!(b[n - 1], b'y' | b'Y') {
        return;
    }
    let before = char_before(b, n - 1);
    if before > 0 && !is_vowel(b[before]) {
        w.replace_range(n - 1.., "i");
    }
}

fn step_2(w: &mut String, p1: usize) {
    let Some(&(suffix, replacement)) = STEP_2.iter().find(|(s, _)| w.ends_with(s)) else {
        return;
    };
    let at = w.len() - suffix.len();
    if at < p1 {
        return;
    }
    let before = at.checked_sub(1).map(|i| w.as_bytes()[i]);
    match (suffix, replacement) {
        (_, Some(r)) => w.replace_range(at.., r),
        ("ogi", None) if before == Some(b'l') => w.replace_range(at.., "og"),
        ("li", None) if before.is_some_and(is_valid_li) => w.truncate(at),
        _ => {}
    }
}

fn step_3(w: &mut String, p1: usize, p2: usize) {
    let Some(&(suffix, replacement)) = STEP_3.iter().find(|(s, _)| w.ends_with(s)) else {
        return;
    };
    let at = w.len() - suffix.len();
    if at >= p1 && (suffix != "ative" || at >= p2) {
        w.replace_range(at.., replacement);
    }
}

fn step_4(w: &mut String, p2: usize) {
    let Some(suffix) = STEP_4.iter().find(|s| w.ends_with(*s)) else {
        return;
    };
    let at = w.len() - suffix.len();
    if at < p2 {
        return;
    }
    if *suffix != "ion" || (at > 0 && matches!(w.as_bytes()[at - 1], b's' | b't')) {
        w.truncate(at);
    }
}

fn step_5(w: &mut String, p1: usize, p2: usize) {
    let b = w.as_bytes();
    let Some(&last) = b.last() else {
        return;
    };
    let at = b.len() - 1;
    let delete = match last {
        b'e' => at >= p2 || (at >= p1 && !ends_short_syllable(b, at)),
        b'l' => at >= p2 && at > 0 && b[at - 1] == b'l',
        _ => false,
    };
    if delete {
        w.truncate(at);
    }
}

/// The Snowball English stem of `word` (expected lower-case; other characters pass through).
pub fn stem(word: &str) -> String {
    if let Some(&(_, fixed)) = EXCEPTIONS.iter().find(|(w, _)| *w == word) {
        return fixed.to_owned();
    }
    if word.chars().nth(2).is_none() {
        return word.to_owned();
    }
    let mut w = word.strip_prefix('\'').unwrap_or(word).to_owned();
    // A y at the start or after a vowel is a consonant: `Y` until the end.
    let mut y_found = false;
    let mut prev_vowel = false;
    for i in 0..w.len() {
        let c = w.as_bytes()[i];
        if c == b'y' && (i == 0 || prev_vowel) {
            w.replace_range(i..=i, "Y");
            y_found = true;
            prev_vowel = false;
        } else {
            prev_vowel = is_vowel(c);
        }
    }
    let (p1, p2) = regions(w.as_bytes());
    step_1a(&mut w);
    if !INVARIANT_AFTER_1A.contains(&w.as_str()) {
        step_1b(&mut w, p1);
        step_1c(&mut w);
        step_2(&mut w, p1);
        step_3(&mut w, p1, p2);
        step_4(&mut w, p2);
        step_5(&mut w, p1, p2);
    }
    if y_found {
        w = w.replace('Y', "y");
    }
    w
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use proptest::prelude::*;
    use rust_stemmers::{Algorithm, Stemmer};

    use super::*;

    fn reference(word: &str) -> String {
        Stemmer::create(Algorithm::English).stem(word).into_owned()
    }

    fn assert_same(words: impl IntoIterator<Item = String>) -> usize {
        let snowball = Stemmer::create(Algorithm::English);
        let mut n = 0;
        for word in words {
            assert_eq!(stem(&word), snowball.stem(&word), "stem of {word:?}");
            n += 1;
        }
        n
    }

    /// Lower-cased words (letters, digits, apostrophes) of the repository's prose, data and code.
    fn repository_words() -> BTreeSet<String> {
        // A file or folder that vanishes between listing and reading (a tool's temporary file) is
        // skipped, and so is `benches/results.json` (git-ignored output that `run_all.py` may be
        // half-way through writing): neither is the repository's text.
        fn gone(e: &std::io::Error) -> bool {
            e.kind() == std::io::ErrorKind::NotFound
        }
        fn walk(path: &Path, texts: &mut Vec<String>) {
            if path.is_dir() {
                let mut entries = Vec::new();
                match std::fs::read_dir(path) {
                    Ok(dir) => {
                        for e in dir {
                            match e {
                                Ok(e) => entries.push(e.path()),
                                Err(e) if gone(&e) => {}
                                Err(e) => panic!("listing {}: {e}", path.display()),
                            }
                        }
                    }
                    Err(e) if gone(&e) => return,
                    Err(e) => panic!("listing {}: {e}", path.display()),
                }
                entries.sort();
                for entry in entries {
                    walk(&entry, texts);
                }
            } else if path
                .extension()
                .is_some_and(|e| e == "md" || e == "json" || e == "py")
                && !path.ends_with("benches/results.json")
            {
                match std::fs::read_to_string(path) {
                    Ok(text) => texts.push(text),
                    Err(e) if gone(&e) => {}
                    Err(e) => panic!("reading {}: {e}", path.display()),
                }
            }
        }
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut texts = Vec::new();
        for part in [
            "README.md",
            "ARCHITECTURE.md",
            "docs",
            "benches",
            "mcp_gemma",
        ] {
            walk(&root.join(part), &mut texts);
        }
        let mut words = BTreeSet::new();
        for text in &texts {
            for word in text.split(|c: char| !(c.is_alphanumeric() || c == '\'')) {
                let lower = word.to_lowercase();
                words.insert(lower.trim_matches('\'').to_owned());
                words.insert(lower);
            }
        }
        words
    }

    #[test]
    fn known_stems() {
        for (word, want) in [
            ("generously", "generous"),
            ("generate", "generat"),
            ("communism", "communism"),
            ("arsenal", "arsenal"),
            ("skies", "sky"),
            ("skis", "ski"),
            ("sky", "sky"),
            ("dying", "die"),
            ("lying", "lie"),
            ("news", "news"),
            ("succeed", "succeed"),
            ("succeeding", "succeed"),
            ("proceeds", "proceed"),
            ("inning's", "inning"),
            ("dog's", "dog"),
            ("dogs'", "dog"),
            ("'tis", "tis"),
            ("ties", "tie"),
            ("cries", "cri"),
            ("gas", "gas"),
            ("gaps", "gap"),
            ("caresses", "caress"),
            ("agreed", "agre"),
            ("feed", "feed"),
            ("hopping", "hop"),
            ("hoping", "hope"),
            ("luxuriating", "luxuri"),
            ("cry", "cri"),
            ("by", "by"),
            ("say", "say"),
            ("yes", "yes"),
            ("enjoying", "enjoy"),
            ("relational", "relat"),
            ("conditional", "condit"),
            ("archaeology", "archaeolog"),
            ("analogies", "analog"),
            ("hopefully", "hope"),
            ("happily", "happili"),
            ("effective", "effect"),
            ("adjustment", "adjust"),
            ("controlling", "control"),
            ("roll", "roll"),
            ("naïvely", "naïv"),
            ("café", "café"),
            ("東京", "東京"),
            ("3.5", "3.5"),
            ("a", "a"),
            ("'", "'"),
            ("", ""),
        ] {
            assert_eq!(stem(word), want, "stem of {word:?}");
        }
    }

    #[test]
    fn same_stems_as_rust_stemmers_on_the_repository_words() {
        let words = repository_words();
        assert!(words.len() > 5_000, "only {} words read", words.len());
        assert_same(words);
    }

    #[test]
    fn same_stems_as_rust_stemmers_on_every_short_word() {
        // Every word of up to four characters over letters that steer the rules, an apostrophe, an
        // upper-case Y and two non-ASCII characters (longer ones: the generated words below).
        let alphabet = ['a', 'e', 'y', 'Y', 's', 'l', 'i', 'd', '\'', 'é', '東'];
        let mut words = vec![String::new()];
        let mut start = 0;
        for _ in 0..4 {
            let end = words.len();
            for i in start..end {
                for c in alphabet {
                    let mut w = words[i].clone();
                    w.push(c);
                    words.push(w);
                }
            }
            start = end;
        }
        assert_eq!(assert_same(words), 16_105);
    }

    /// Every suffix the rules look for.
    fn suffixes() -> Vec<&'static str> {
        let mut all: Vec<&str> = STEP_1B.iter().map(|(s, _)| *s).collect();
        all.extend(STEP_2.iter().map(|(s, _)| *s));
        all.extend(STEP_3.iter().map(|(s, _)| *s));
        all.extend(STEP_4);
        all.extend(EXCEPTIONS.iter().map(|(s, _)| *s));
        all.extend(INVARIANT_AFTER_1A);
        all.extend([
            "sses", "ied", "ies", "us", "ss", "s", "'s'", "'s", "'", "y", "at", "bl", "iz", "bb",
            "ll", "e", "l", "",
        ]);
        all
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(3000))]

        #[test]
        fn same_stems_as_rust_stemmers_on_generated_words(
            head in "[aeiouybcdglmnprstwxzY'é1]{0,9}",
            suffix in prop::sample::select(suffixes()),
            tail in prop::sample::select(suffixes()),
        ) {
            for word in [format!("{head}{suffix}"), format!("{head}{suffix}{tail}"), head.clone()] {
                prop_assert_eq!(stem(&word), reference(&word), "stem of {:?}", word);
            }
        }
    }
}
