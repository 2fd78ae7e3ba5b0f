//! The tokenizer's file: a compact binary image that loads in milliseconds (Gemma's `tokenizer.json`
//! is 33 MB of JSON). Little-endian throughout:
//!
//! ```text
//! magic "MGBPETOK" | version u32 | body length u64 | body | checksum u64 (FNV-1a of the body)
//! body: n_tokens u32, n_merges u32, n_added u32,
//!       unk and bos: (len u32 + UTF-8) each, len u32::MAX when absent,
//!       tokens by id: len u32 + UTF-8, len u32::MAX for an id the model vocabulary lacks,
//!       merges in rank order: left u32, right u32, merged u32,
//!       added tokens: id u32, special u8, len u32 + UTF-8
//! ```
//!
//! Written to a temporary file and renamed, so a reader sees the old file or the whole new one. A
//! file of another kind, another version, cut short or altered is refused with a message saying so.

use std::fs;
use std::io::Write;
use std::path::Path;

use super::{AddedToken, BpeTokenizer};
use crate::errors::{CoreError, CoreResult};

const MAGIC: &[u8; 8] = b"MGBPETOK";
/// Bumped whenever the layout changes; an older file is refused (and rebuilt by the caller).
pub const VERSION: u32 = 1;
const ABSENT: u32 = u32::MAX;
const HEADER: usize = 8 + 4 + 8;

fn checksum(data: &[u8]) -> u64 {
    // FNV-1a over 8-byte words (then the tail bytes): fast enough to check 10 MB in a few ms.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut words = data.chunks_exact(8);
    for word in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(word);
        hash ^= u64::from_le_bytes(w);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    for &b in words.remainder() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

fn put_str(out: &mut Vec<u8>, s: Option<&str>) -> CoreResult<()> {
    match s {
        Some(s) => {
            let len = u32::try_from(s.len())
                .ok()
                .filter(|&l| l != ABSENT)
                .ok_or_else(|| CoreError::invalid("a token is too long to store"))?;
            put_u32(out, len);
            out.extend_from_slice(s.as_bytes());
        }
        None => put_u32(out, ABSENT),
    }
    Ok(())
}

fn count(n: usize, what: &str) -> CoreResult<u32> {
    u32::try_from(n).map_err(|_| CoreError::invalid(format!("too many {what} to store")))
}

/// The file's bytes for `tok`.
pub fn to_bytes(tok: &BpeTokenizer) -> CoreResult<Vec<u8>> {
    let mut body = Vec::with_capacity(tok.tokens.len() * 12 + tok.merge_list.len() * 12);
    put_u32(&mut body, count(tok.tokens.len(), "tokens")?);
    put_u32(&mut body, count(tok.merge_list.len(), "merges")?);
    put_u32(&mut body, count(tok.added.len(), "added tokens")?);
    put_str(&mut body, tok.unk.and_then(|id| tok.token_text(id)))?;
    put_str(&mut body, tok.bos.and_then(|id| tok.token_text(id)))?;
    for token in &tok.tokens {
        put_str(&mut body, token.as_deref())?;
    }
    for merge in &tok.merge_list {
        for &id in merge {
            put_u32(&mut body, id);
        }
    }
    for token in &tok.added {
        put_u32(&mut body, token.id);
        body.push(u8::from(token.special));
        put_str(&mut body, Some(&token.content))?;
    }
    let mut out = Vec::with_capacity(HEADER + body.len() + 8);
    out.extend_from_slice(MAGIC);
    put_u32(&mut out, VERSION);
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&checksum(&body).to_le_bytes());
    Ok(out)
}

/// Writes `tok` to `path` atomically (a temporary file beside it, synced, then renamed).
pub fn save(tok: &BpeTokenizer, path: &Path) -> CoreResult<()> {
    let bytes = to_bytes(tok)?;
    let name = path
        .file_name()
        .ok_or_else(|| CoreError::invalid(format!("{} is not a file path", path.display())))?;
    let mut tmp_name = name.to_os_string();
    tmp_name.push(format!(".tmp{}", std::process::id()));
    let tmp = path.with_file_name(tmp_name);
    let io =
        |e: std::io::Error| CoreError::invalid(format!("could not write {}: {e}", path.display()));
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io)
}

/// Reads a tokenizer file written by [`save`].
pub fn load(path: &Path) -> CoreResult<BpeTokenizer> {
    let bytes = fs::read(path)
        .map_err(|e| CoreError::invalid(format!("could not read {}: {e}", path.display())))?;
    from_bytes(&bytes).map_err(|e| CoreError::invalid(format!("{}: {e}", path.display())))
}

struct Reader<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> CoreResult<&'a [u8]> {
        let end = self.at.checked_add(n).filter(|&e| e <= self.data.len());
        let end = end.ok_or_else(|| {
            CoreError::invalid("the tokenizer file is inconsistent (a record runs past its end)")
        })?;
        let out = &self.data[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u32(&mut self) -> CoreResult<u32> {
        let mut b = [0u8; 4];
        b.copy_from_slice(self.take(4)?);
        Ok(u32::from_le_bytes(b))
    }

    fn str(&mut self) -> CoreResult<Option<&'a str>> {
        let len = self.u32()?;
        if len == ABSENT {
            return Ok(None);
        }
        let raw = self.take(len as usize)?;
        std::str::from_utf8(raw)
            .map(Some)
            .map_err(|_| CoreError::invalid("the tokenizer file holds a token that is not UTF-8"))
    }
}

/// Parses the bytes of a tokenizer file, checking kind, version, length and checksum first.
pub fn from_bytes(bytes: &[u8]) -> CoreResult<BpeTokenizer> {
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err(CoreError::invalid("not an mcp-gemma tokenizer file"));
    }
    let mut v = [0u8; 4];
    v.copy_from_slice(&bytes[8..12]);
    let version = u32::from_le_bytes(v);
    if version != VERSION {
        return Err(CoreError::invalid(format!(
            "tokenizer file version {version}, this build reads version {VERSION}"
        )));
    }
    let mut l = [0u8; 8];
    l.copy_from_slice(&bytes[12..20]);
    let body_len = u64::from_le_bytes(l);
    let expected = (HEADER as u64)
        .checked_add(body_len)
        .and_then(|n| n.checked_add(8));
    if expected != Some(bytes.len() as u64) {
        return Err(CoreError::invalid(format!(
            "the tokenizer file is {} bytes, its header says {} (cut short or extended)",
            bytes.len(),
            expected.map_or_else(|| "an impossible size".to_owned(), |n| n.to_string())
        )));
    }
    let body = &bytes[HEADER..bytes.len() - 8];
    let mut c = [0u8; 8];
    c.copy_from_slice(&bytes[bytes.len() - 8..]);
    if checksum(body) != u64::from_le_bytes(c) {
        return Err(CoreError::invalid(
            "the tokenizer file's checksum does not match (corrupted)",
        ));
    }
    let mut r = Reader { data: body, at: 0 };
    let n_tokens = r.u32()? as usize;
    let n_merges = r.u32()? as usize;
    let n_added = r.u32()? as usize;
    // Every record takes at least 4 bytes: a count past that is a damaged header, not an allocation.
    if n_tokens.saturating_add(n_merges).saturating_add(n_added) > body.len() / 4 {
        return Err(CoreError::invalid(
            "the tokenizer file's counts exceed its size",
        ));
    }
    let unk = r.str()?.map(str::to_owned);
    let bos = r.str()?.map(str::to_owned);
    let mut tokens = Vec::with_capacity(n_tokens);
    for _ in 0..n_tokens {
        tokens.push(r.str()?.map(Box::from));
    }
    let mut merges = Vec::with_capacity(n_merges);
    for _ in 0..n_merges {
        merges.push([r.u32()?, r.u32()?, r.u32()?]);
    }
    let mut added = Vec::with_capacity(n_added);
    for _ in 0..n_added {
        let id = r.u32()?;
        let special = match r.take(1)?[0] {
            0 => false,
            1 => true,
            _ => {
                return Err(CoreError::invalid(
                    "the tokenizer file is inconsistent (bad flag)",
                ))
            }
        };
        let content = r.str()?.ok_or_else(|| {
            CoreError::invalid("the tokenizer file has an added token with no text")
        })?;
        added.push(AddedToken {
            id,
            content: content.to_owned(),
            special,
        });
    }
    if r.at != body.len() {
        return Err(CoreError::invalid(
            "the tokenizer file has bytes after its last record",
        ));
    }
    BpeTokenizer::from_parts(tokens, merges, added, unk.as_deref(), bos.as_deref())
}
