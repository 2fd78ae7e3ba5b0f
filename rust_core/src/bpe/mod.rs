//! A byte-fallback BPE tokenizer with the semantics of Hugging Face `tokenizers` for SentencePiece-style
//! vocabularies (Gemma): added tokens split out first (leftmost-longest, as its `AddedVocabulary`),
//! spaces normalised to `▁`, the whole segment merged by rank (its `Word::merge_all`, same ties),
//! characters outside the vocabulary as `<0xNN>` byte tokens, an optional BOS in front; decoding as
//! the `Replace("▁", " ")`, `ByteFallback`, `Fuse` decoder chain. `format` stores it compactly.

pub mod format;
#[cfg(test)]
mod tests;

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

use crate::errors::{CoreError, CoreResult};

/// What the normaliser writes for a space.
const SPACE_MARK: char = '\u{2581}';

/// A token matched in the raw text before normalisation (`AddedToken` with no strip options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddedToken {
    pub id: u32,
    pub content: String,
    /// Dropped by `decode(skip_special_tokens=true)`.
    pub special: bool,
}

/// The tokenizer; immutable once built, so it is shared freely across threads.
#[derive(Debug)]
pub struct BpeTokenizer {
    /// Model vocabulary by id (`None` for an id the model vocabulary lacks).
    tokens: Vec<Option<Box<str>>>,
    vocab: FxHashMap<Box<str>, u32>,
    /// Merges in rank order as (left, right, merged) ids; the map holds the same, keyed by the pair.
    merge_list: Vec<[u32; 3]>,
    merges: FxHashMap<(u32, u32), (u32, u32)>,
    added: Vec<AddedToken>,
    added_by_content: FxHashMap<Box<str>, u32>,
    added_by_id: FxHashMap<u32, usize>,
    /// For each first byte of an added token, the lengths of the added tokens starting with it,
    /// longest first.
    added_lengths: Vec<Vec<usize>>,
    /// Per id: whether decoding with `skip_special_tokens` drops it (its text is a special token's).
    skip: Vec<bool>,
    byte_ids: [Option<u32>; 256],
    unk: Option<u32>,
    bos: Option<u32>,
}

/// A queued merge: lowest rank first, then leftmost (`tokenizers`' `Merge` ordering).
#[derive(Debug, PartialEq, Eq)]
struct Merge {
    pos: usize,
    rank: u32,
    new_id: u32,
}

impl Ord for Merge {
    fn cmp(&self, other: &Self) -> Ordering {
        other
            .rank
            .cmp(&self.rank)
            .then_with(|| other.pos.cmp(&self.pos))
    }
}

impl PartialOrd for Merge {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[derive(Debug, Clone, Copy)]
struct Symbol {
    id: u32,
    prev: isize,
    next: isize,
    /// Byte length; 0 once merged into its left neighbour.
    len: usize,
}

impl BpeTokenizer {
    /// Builds from a vocabulary (token, id), merges by rank as token pairs, the added tokens, the
    /// unknown token and the BOS the post-processor prepends (both by text, as in `tokenizer.json`).
    pub fn new(
        vocab: Vec<(String, u32)>,
        merges: &[(String, String)],
        added: Vec<AddedToken>,
        unk: Option<&str>,
        bos: Option<&str>,
    ) -> CoreResult<Self> {
        let map: FxHashMap<&str, u32> = vocab.iter().map(|(t, i)| (t.as_str(), *i)).collect();
        let id_of = |t: &str| {
            map.get(t).copied().ok_or_else(|| {
                CoreError::invalid(format!("merge token {t:?} is not in the vocabulary"))
            })
        };
        let mut merge_list = Vec::with_capacity(merges.len());
        for (left, right) in merges {
            let merged = format!("{left}{right}");
            merge_list.push([id_of(left)?, id_of(right)?, id_of(&merged)?]);
        }
        drop(map);
        let size = vocab
            .iter()
            .map(|(_, i)| *i as usize + 1)
            .max()
            .unwrap_or(0);
        let mut tokens: Vec<Option<Box<str>>> = vec![None; size];
        for (token, id) in vocab {
            tokens[id as usize] = Some(token.into_boxed_str());
        }
        let unk = unk.map(str::to_owned);
        let bos = bos.map(str::to_owned);
        Self::from_parts(tokens, merge_list, added, unk.as_deref(), bos.as_deref())
    }

    /// Builds from ids directly (what `format` stores).
    pub(crate) fn from_parts(
        tokens: Vec<Option<Box<str>>>,
        merge_list: Vec<[u32; 3]>,
        added: Vec<AddedToken>,
        unk: Option<&str>,
        bos: Option<&str>,
    ) -> CoreResult<Self> {
        let n = tokens.len();
        let mut vocab = FxHashMap::with_capacity_and_hasher(n, Default::default());
        for (id, token) in tokens.iter().enumerate() {
            if let Some(token) = token {
                // `tokenizers` keeps the last id of a repeated token.
                vocab.insert(token.clone(), id as u32);
            }
        }
        let mut merges = FxHashMap::with_capacity_and_hasher(merge_list.len(), Default::default());
        for (rank, &[left, right, merged]) in merge_list.iter().enumerate() {
            if [left, right, merged].iter().any(|&i| i as usize >= n) {
                return Err(CoreError::invalid(format!(
                    "merge {rank} names an id outside the vocabulary of {n}"
                )));
            }
            // A repeated pair keeps its last rank, as `tokenizers` collects them into a map.
            merges.insert((left, right), (rank as u32, merged));
        }
        let mut added_by_content = FxHashMap::default();
        let mut added_by_id = FxHashMap::default();
        let mut added_lengths: Vec<Vec<usize>> = vec![Vec::new(); 256];
        for (index, token) in added.iter().enumerate() {
            if token.content.is_empty() {
                return Err(CoreError::invalid("an added token is empty"));
            }
            added_by_content.insert(token.content.clone().into_boxed_str(), token.id);
            added_by_id.insert(token.id, index);
            let lengths = &mut added_lengths[token.content.as_bytes()[0] as usize];
            if !lengths.contains(&token.content.len()) {
                lengths.push(token.content.len());
            }
        }
        for lengths in &mut added_lengths {
            lengths.sort_unstable_by(|a, b| b.cmp(a));
        }
        let mut byte_ids = [None; 256];
        for (byte, slot) in byte_ids.iter_mut().enumerate() {
            *slot = vocab.get(format!("<0x{byte:02X}>").as_str()).copied();
        }
        let lookup = |name: &str, what: &str| -> CoreResult<u32> {
            added_by_content
                .get(name)
                .or_else(|| vocab.get(name))
                .copied()
                .ok_or_else(|| {
                    CoreError::invalid(format!(
                        "the {what} token {name:?} is not in the vocabulary"
                    ))
                })
        };
        let unk = unk.map(|t| lookup(t, "unknown")).transpose()?;
        let bos = bos.map(|t| lookup(t, "BOS")).transpose()?;
        let mut this = Self {
            tokens,
            vocab,
            merge_list,
            merges,
            added,
            added_by_content,
            added_by_id,
            added_lengths,
            skip: Vec::new(),
            byte_ids,
            unk,
            bos,
        };
        let specials: rustc_hash::FxHashSet<&str> = this
            .added
            .iter()
            .filter(|t| t.special)
            .map(|t| t.content.as_str())
            .collect();
        let size = this.vocab_size();
        this.skip = (0..size as u32)
            .map(|id| this.token_text(id).is_some_and(|t| specials.contains(t)))
            .collect();
        Ok(this)
    }

    /// Ids run from 0 to this (model vocabulary and added tokens together).
    pub fn vocab_size(&self) -> usize {
        let added = self
            .added
            .iter()
            .map(|t| t.id as usize + 1)
            .max()
            .unwrap_or(0);
        self.tokens.len().max(added)
    }

    /// The id of a token's text: an added token's first, then the model vocabulary's.
    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.added_by_content
            .get(token)
            .or_else(|| self.vocab.get(token))
            .copied()
    }

    /// A token id's text (an added token's content first, as `tokenizers`' decode looks it up).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        if let Some(&index) = self.added_by_id.get(&id) {
            return Some(&self.added[index].content);
        }
        self.tokens.get(id as usize)?.as_deref()
    }

    /// Whether `id` is an added token marked special.
    pub fn is_special(&self, id: u32) -> bool {
        self.added_by_id
            .get(&id)
            .is_some_and(|&index| self.added[index].special)
    }

    /// Token ids of `text`, with the BOS in front when `add_special_tokens`.
    pub fn encode(&self, text: &str, add_special_tokens: bool) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special_tokens {
            out.extend(self.bos);
        }
        let bytes = text.as_bytes();
        let (mut start, mut i) = (0, 0);
        while i < bytes.len() {
            if let Some((id, len)) = self.match_added(text, i) {
                if start < i {
                    self.encode_segment(&text[start..i], &mut out);
                }
                out.push(id);
                i += len;
                start = i;
            } else {
                i += utf8_len(bytes[i]);
            }
        }
        if start < bytes.len() {
            self.encode_segment(&text[start..], &mut out);
        }
        out
    }

    /// The longest added token starting at byte `i` of `text`, as (id, byte length).
    fn match_added(&self, text: &str, i: usize) -> Option<(u32, usize)> {
        let rest = &text[i..];
        for &len in &self.added_lengths[rest.as_bytes()[0] as usize] {
            if len <= rest.len() && rest.is_char_boundary(len) {
                if let Some(&id) = self.added_by_content.get(&rest[..len]) {
                    return Some((id, len));
                }
            }
        }
        None
    }

    /// One segment between added tokens: normalised, split into characters, merged.
    fn encode_segment(&self, segment: &str, out: &mut Vec<u32>) {
        let normalized = segment.replace(' ', "\u{2581}");
        let mut symbols: Vec<Symbol> = Vec::with_capacity(normalized.len());
        let add = |symbols: &mut Vec<Symbol>, id: u32, len: usize| {
            let index = symbols.len() as isize;
            let prev = if let Some(last) = symbols.last_mut() {
                last.next = index;
                index - 1
            } else {
                -1
            };
            symbols.push(Symbol {
                id,
                prev,
                next: -1,
                len,
            });
        };
        let mut unk: Option<(u32, usize)> = None;
        for (start, ch) in normalized.char_indices() {
            let piece = &normalized[start..start + ch.len_utf8()];
            if let Some(&id) = self.vocab.get(piece) {
                if let Some((unk_id, unk_len)) = unk.take() {
                    add(&mut symbols, unk_id, unk_len);
                }
                add(&mut symbols, id, piece.len());
                continue;
            }
            let fallback: Option<Vec<u32>> =
                piece.bytes().map(|b| self.byte_ids[b as usize]).collect();
            if let Some(ids) = fallback {
                // As `tokenizers`: a pending unknown stays pending across byte tokens.
                for id in ids {
                    add(&mut symbols, id, 1);
                }
                continue;
            }
            if let Some(unk_id) = self.unk {
                unk = Some(match unk {
                    Some((id, len)) => (id, len + piece.len()),
                    None => (unk_id, piece.len()),
                });
            }
        }
        if let Some((unk_id, unk_len)) = unk {
            add(&mut symbols, unk_id, unk_len);
        }
        self.merge_all(&mut symbols);
        out.extend(symbols.iter().filter(|s| s.len != 0).map(|s| s.id));
    }

    /// `tokenizers`' `Word::merge_all` without dropout: the lowest-ranked pair first, ties leftmost,
    /// stale queue entries skipped.
    fn merge_all(&self, symbols: &mut [Symbol]) {
        let mut queue: BinaryHeap<Merge> = symbols
            .windows(2)
            .enumerate()
            .filter_map(|(pos, w)| {
                self.merges
                    .get(&(w[0].id, w[1].id))
                    .map(|&(rank, new_id)| Merge { pos, rank, new_id })
            })
            .collect();
        while let Some(top) = queue.pop() {
            if symbols[top.pos].len == 0 || symbols[top.pos].next == -1 {
                continue;
            }
            let next_pos = symbols[top.pos].next as usize;
            let right = symbols[next_pos];
            let pair = (symbols[top.pos].id, right.id);
            if self
                .merges
                .get(&pair)
                .is_none_or(|&(_, new_id)| new_id != top.new_id)
            {
                continue;
            }
            let current = &mut symbols[top.pos];
            current.id = top.new_id;
            current.len += right.len;
            current.next = right.next;
            symbols[next_pos].len = 0;
            if right.next > -1 && (right.next as usize) < symbols.len() {
                symbols[right.next as usize].prev = top.pos as isize;
            }
            let current = symbols[top.pos];
            if current.prev >= 0 {
                let prev = current.prev as usize;
                if let Some(&(rank, new_id)) = self.merges.get(&(symbols[prev].id, current.id)) {
                    queue.push(Merge {
                        pos: prev,
                        rank,
                        new_id,
                    });
                }
            }
            let next = current.next as usize;
            if current.next >= 0 && next < symbols.len() {
                if let Some(&(rank, new_id)) = self.merges.get(&(current.id, symbols[next].id)) {
                    queue.push(Merge {
                        pos: top.pos,
                        rank,
                        new_id,
                    });
                }
            }
        }
    }

    /// Text of `ids`: unknown ids dropped, special tokens too when `skip_special_tokens`, `▁` as a
    /// space, runs of byte tokens joined into UTF-8 (one U+FFFD per byte when they are not).
    pub fn decode(&self, ids: &[u32], skip_special_tokens: bool) -> String {
        let mut out = String::new();
        let mut bytes: Vec<u8> = Vec::new();
        for &id in ids {
            let Some(text) = self.token_text(id) else {
                continue;
            };
            if skip_special_tokens && self.skip.get(id as usize).copied().unwrap_or(false) {
                continue;
            }
            let text = if text.contains(SPACE_MARK) {
                std::borrow::Cow::Owned(text.replace(SPACE_MARK, " "))
            } else {
                std::borrow::Cow::Borrowed(text)
            };
            if let Some(byte) = byte_token(&text) {
                bytes.push(byte);
                continue;
            }
            flush_bytes(&mut bytes, &mut out);
            out.push_str(&text);
        }
        flush_bytes(&mut bytes, &mut out);
        out
    }
}

/// The byte of a `<0xNN>` token (`ByteFallback`'s test: six bytes, `u8::from_str_radix` of the two
/// in the middle).
fn byte_token(text: &str) -> Option<u8> {
    if text.len() == 6 && text.starts_with("<0x") && text.ends_with('>') {
        u8::from_str_radix(text.get(3..5)?, 16).ok()
    } else {
        None
    }
}

fn flush_bytes(bytes: &mut Vec<u8>, out: &mut String) {
    if bytes.is_empty() {
        return;
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => out.push_str(text),
        Err(_) => out.extend(std::iter::repeat_n('\u{FFFD}', bytes.len())),
    }
    bytes.clear();
}

/// Length of the UTF-8 sequence that starts with `first`.
fn utf8_len(first: u8) -> usize {
    match first {
        0..=0x7F => 1,
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}
