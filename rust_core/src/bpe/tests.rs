//! The BPE core on a tiny hand-made vocabulary (the Gemma vocabulary is compared with `tokenizers`
//! itself in `tests/llm/test_fast_tokenizer.py`).

use super::format::{from_bytes, to_bytes};
use super::{AddedToken, BpeTokenizer};

fn tiny() -> BpeTokenizer {
    let mut words: Vec<String> = ["<pad>", "<eos>", "<bos>", "<unk>", "<start_of_turn>", "\n"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    words.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    words.extend(
        [
            "a", "b", "c", "ab", "bc", "abc", "▁", "▁a", "▁ab", "é", "aa", "aaa",
        ]
        .iter()
        .map(|s| s.to_string()),
    );
    let vocab = words
        .into_iter()
        .enumerate()
        .map(|(i, w)| (w, i as u32))
        .collect();
    let merges: Vec<(String, String)> = [
        ("b", "c"),
        ("a", "b"),
        ("a", "bc"),
        ("▁", "a"),
        ("▁a", "b"),
        ("a", "a"),
        ("aa", "a"),
    ]
    .iter()
    .map(|(l, r)| (l.to_string(), r.to_string()))
    .collect();
    let added = vec![
        AddedToken {
            id: 0,
            content: "<pad>".into(),
            special: true,
        },
        AddedToken {
            id: 1,
            content: "<eos>".into(),
            special: true,
        },
        AddedToken {
            id: 2,
            content: "<bos>".into(),
            special: true,
        },
        AddedToken {
            id: 3,
            content: "<unk>".into(),
            special: true,
        },
        AddedToken {
            id: 4,
            content: "<start_of_turn>".into(),
            special: true,
        },
        AddedToken {
            id: 5,
            content: "\n".into(),
            special: false,
        },
    ];
    BpeTokenizer::new(vocab, &merges, added, Some("<unk>"), Some("<bos>")).expect("tiny vocabulary")
}

fn pieces(tok: &BpeTokenizer, text: &str) -> Vec<String> {
    tok.encode(text, false)
        .into_iter()
        .map(|id| tok.token_text(id).unwrap_or("?").to_owned())
        .collect()
}

#[test]
fn merges_by_rank_not_by_position() {
    let tok = tiny();
    // "b"+"c" ranks before "a"+"b", so "abc" is a + bc, then a + bc -> abc.
    assert_eq!(pieces(&tok, "abc"), ["abc"]);
    assert_eq!(pieces(&tok, "ab"), ["ab"]);
    // Spaces become ▁ and merge with what follows, by rank: (a, b) wins over (▁, a).
    assert_eq!(pieces(&tok, " a c"), ["▁a", "▁", "c"]);
    assert_eq!(pieces(&tok, " ab c"), ["▁", "ab", "▁", "c"]);
}

#[test]
fn equal_ranks_merge_leftmost_first() {
    let tok = tiny();
    // a a a a: the pair (a, a) at 0 merges first, then (a, a) at 2; (aa, a) never applies.
    assert_eq!(pieces(&tok, "aaaa"), ["aa", "aa"]);
    assert_eq!(pieces(&tok, "aaa"), ["aaa"]);
}

#[test]
fn unknown_characters_fall_back_to_bytes() {
    let tok = tiny();
    assert_eq!(pieces(&tok, "é"), ["é"]);
    assert_eq!(pieces(&tok, "ü"), ["<0xC3>", "<0xBC>"]);
    assert_eq!(tok.decode(&tok.encode("aü b", false), true), "aü b");
    // A lone continuation byte is not UTF-8: one replacement character per byte.
    let c3 = tok.token_to_id("<0xC3>").expect("byte token");
    assert_eq!(tok.decode(&[c3, c3], false), "\u{FFFD}\u{FFFD}");
}

#[test]
fn added_tokens_split_first_and_bos_in_front() {
    let tok = tiny();
    assert_eq!(tok.encode("", true), [2]);
    assert!(tok.encode("", false).is_empty());
    assert_eq!(
        pieces(&tok, "a<start_of_turn>b\n\nc"),
        ["a", "<start_of_turn>", "b", "\n", "\n", "c"]
    );
    // A broken special token is plain text.
    assert_eq!(
        pieces(&tok, "<start_of"),
        ["<0x3C>", "<0x73>", "<0x74>", "a", "<0x72>", "<0x74>", "<0x5F>", "<0x6F>", "<0x66>"]
    );
    let ids = tok.encode("<start_of_turn>ab<eos>", true);
    assert_eq!(tok.decode(&ids, true), "ab");
    assert_eq!(tok.decode(&ids, false), "<bos><start_of_turn>ab<eos>");
    // Ids outside the vocabulary are dropped, as `tokenizers` does.
    assert_eq!(tok.decode(&[1_000_000, 6 + 0x41], false), "A");
}

#[test]
fn file_round_trip_and_refusals() {
    let tok = tiny();
    let bytes = to_bytes(&tok).expect("serialise");
    let back = from_bytes(&bytes).expect("parse");
    for text in ["", "abc aaaa ü<start_of_turn>\n", " a b c "] {
        assert_eq!(back.encode(text, true), tok.encode(text, true));
    }
    assert!(from_bytes(&bytes[..bytes.len() - 1]).is_err());
    assert!(from_bytes(b"{\"version\": \"1.0\"}").is_err());
    let mut flipped = bytes.clone();
    let middle = flipped.len() / 2;
    flipped[middle] ^= 1;
    let err = from_bytes(&flipped).expect_err("corrupt").to_string();
    assert!(err.contains("checksum"), "{err}");
    let mut newer = bytes;
    newer[8] = 99;
    assert!(from_bytes(&newer)
        .expect_err("version")
        .to_string()
        .contains("version 99"));
}

#[test]
fn merges_must_name_vocabulary_tokens() {
    let err = BpeTokenizer::new(
        vec![("a".into(), 0)],
        &[("a".into(), "a".into())],
        vec![],
        None,
        None,
    )
    .expect_err("aa is missing");
    assert!(err.to_string().contains("\"aa\""));
}
