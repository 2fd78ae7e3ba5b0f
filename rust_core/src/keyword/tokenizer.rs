//! Tokens are UAX #29 words (so CJK ideographs come out one by one, punctuation is dropped), lower-cased.

use unicode_segmentation::UnicodeSegmentation;

/// Lower-cased Unicode words of `text`.
pub fn tokenize(text: &str) -> Vec<String> {
    text.unicode_words().map(str::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
