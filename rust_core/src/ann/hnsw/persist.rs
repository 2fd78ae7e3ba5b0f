//! [`HnswIndex::to_bytes`] / [`HnswIndex::from_bytes`]: the graph, codes and tombstones as they
//! are, so a restart does not rebuild the graph (format in `crate::codec`).

use std::sync::Mutex;

use super::{HnswIndex, HnswParams};
use crate::ann::graph::Links;
use crate::codec::{mul, Reader, Writer};
use crate::errors::{CoreError, CoreResult};
use crate::vector::Metric;

const MAGIC: &[u8; 8] = b"MGHNSWIX";
const VERSION: u32 = 1;

fn bad(field: &str, why: impl std::fmt::Display) -> CoreError {
    CoreError::invalid(format!("saved HnswIndex is corrupt: {field}: {why}"))
}

impl HnswIndex {
    /// The whole index as bytes: parameters, ids, tombstones, codes (and rows when kept), the
    /// neighbour lists and the entry point.
    pub fn to_bytes(&self) -> Vec<u8> {
        let n = self.ids.len();
        let (base, upper) = self.links.export();
        let entry = self.entry_point();
        let mut w = Writer::new(
            MAGIC,
            VERSION,
            128 + n * 14 + self.codes.len() + self.data.len() * 4 + (base.len() + upper.len()) * 4,
        );
        w.count(self.dim);
        w.put(match self.metric {
            Metric::Ip => 0u8,
            Metric::Cosine => 1,
        });
        w.count(self.params.m);
        w.count(self.params.ef_construction);
        w.put(self.params.seed);
        w.put(u8::from(self.params.keep_rows));
        w.count(n);
        w.slice(&self.ids);
        let deleted: Vec<u8> = self.deleted.iter().map(|&d| u8::from(d)).collect();
        w.slice(&deleted);
        w.slice(self.links.levels());
        w.put(u8::from(entry.is_some()));
        let (node, level) = entry.unwrap_or((0, 0));
        w.put(node);
        w.count(level);
        w.slice(&self.codes);
        w.slice(&self.scales);
        if self.params.keep_rows {
            w.slice(&self.data);
        }
        w.slice(&base);
        w.count(upper.len());
        w.slice(&upper);
        w.finish()
    }

    /// An index saved by [`HnswIndex::to_bytes`]. Truncated, foreign or inconsistent input (a
    /// neighbour id out of range or on a layer its node does not reach, a bad entry point,
    /// repeated live ids, codes out of range) is an error.
    pub fn from_bytes(bytes: &[u8]) -> CoreResult<Self> {
        let mut r = Reader::open(bytes, MAGIC, VERSION, "HnswIndex")?;
        let dim = r.count("dim", 1 << 20)?;
        let metric = match r.get::<u8>("metric")? {
            0 => Metric::Ip,
            1 => Metric::Cosine,
            v => return Err(r.bad("metric", format!("unknown code {v}"))),
        };
        let m = r.count("m", super::MAX_M)?;
        let ef_construction = r.count("ef_construction", usize::MAX)?;
        let seed: u64 = r.get("seed")?;
        let keep_rows = r.flag("keep_rows")?;
        let params = HnswParams {
            m,
            ef_construction,
            seed,
            keep_rows,
        };
        let mut index = Self::new(dim, metric, params).map_err(|e| bad("parameters", e))?;
        let n = r.count("nodes", u32::MAX as usize)?;
        let ids: Vec<u64> = r.slice(n, "ids")?;
        let deleted: Vec<u8> = r.slice(n, "tombstones")?;
        let levels: Vec<u8> = r.slice(n, "levels")?;
        let has_entry = r.flag("entry")?;
        let entry_node: u32 = r.get("entry node")?;
        let entry_level = r.count("entry level", u8::MAX as usize)?;
        let cells = mul(&r, n, dim, "codes")?;
        let codes: Vec<i8> = r.slice(cells, "codes")?;
        let scales: Vec<f32> = r.slice(n, "scales")?;
        let data: Vec<f32> = if keep_rows {
            r.slice(cells, "rows")?
        } else {
            Vec::new()
        };
        let base: Vec<u32> = r.slice(mul(&r, n, 2 * m + 1, "layer 0")?, "layer 0")?;
        let n_upper = r.count("upper layers", usize::MAX)?;
        let upper: Vec<u32> = r.slice(n_upper, "upper layers")?;
        r.finish()?;

        if has_entry != (n > 0) {
            return Err(bad(
                "entry",
                format!("{n} nodes but entry point present: {has_entry}"),
            ));
        }
        if has_entry
            && levels.get(entry_node as usize).map(|&l| usize::from(l)) != Some(entry_level)
        {
            return Err(bad(
                "entry",
                format!("node {entry_node} at level {entry_level} is not there"),
            ));
        }
        if codes.iter().any(|&c| c < -127) {
            return Err(bad("codes", "a code is out of [-127, 127]"));
        }
        if scales.iter().any(|s| !(s.is_finite() && *s >= 0.0)) {
            return Err(bad("scales", "a scale is negative or not finite"));
        }
        if data.iter().any(|x| !x.is_finite()) {
            return Err(bad("rows", "a value is not finite"));
        }
        let mut live = 0;
        for (node, (&id, &d)) in ids.iter().zip(&deleted).enumerate() {
            match d {
                0 => {
                    live += 1;
                    if index.slots.insert(id, node as u32).is_some() {
                        return Err(bad("ids", format!("live id {id} appears twice")));
                    }
                }
                1 => {}
                v => return Err(bad("tombstones", format!("flag {v} for node {node}"))),
            }
        }
        index.links = Links::import(m, levels, base, upper).map_err(|e| bad("graph", e))?;
        index.ids = ids;
        index.deleted = deleted.into_iter().map(|d| d == 1).collect();
        index.live = live;
        index.codes = codes;
        index.scales = scales;
        index.data = data;
        index.entry = Mutex::new(has_entry.then_some((entry_node, entry_level)));
        Ok(index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(n: usize, dim: usize, seed: u64) -> Vec<f32> {
        let mut s = seed;
        (0..n * dim)
            .map(|_| {
                s = s
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((s >> 40) as f32 / 16_777_216.0) - 0.5
            })
            .collect()
    }

    fn sample(keep_rows: bool) -> CoreResult<HnswIndex> {
        let params = HnswParams {
            m: 4,
            ef_construction: 32,
            seed: 3,
            keep_rows,
        };
        let mut idx = HnswIndex::new(8, Metric::Cosine, params)?;
        let ids: Vec<u64> = (0..300).collect();
        idx.add(&ids, &rows(300, 8, 1))?;
        idx.remove(&[5, 6, 7]);
        idx.add(&[9], &rows(1, 8, 2))?; // a replaced row: one more tombstone
        Ok(idx)
    }

    #[test]
    fn round_trip_answers_the_same() -> CoreResult<()> {
        for keep_rows in [true, false] {
            let idx = sample(keep_rows)?;
            let back = HnswIndex::from_bytes(&idx.to_bytes())?;
            assert_eq!(back.to_bytes(), idx.to_bytes());
            assert_eq!((back.len(), back.nodes()), (idx.len(), idx.nodes()));
            assert_eq!(back.params(), idx.params());
            assert_eq!(back.entry_point(), idx.entry_point());
            for q in rows(5, 8, 9).chunks_exact(8) {
                assert_eq!(back.candidates(q, 10, 20)?, idx.candidates(q, 10, 20)?);
                if keep_rows {
                    assert_eq!(back.search(q, 5, 20)?, idx.search(q, 5, 20)?);
                }
            }
        }
        // a restored graph keeps growing like the original
        let mut idx = sample(true)?;
        let mut back = HnswIndex::from_bytes(&idx.to_bytes())?;
        for i in [&mut idx, &mut back] {
            i.add(&[1000, 1001], &rows(2, 8, 4))?;
        }
        assert!(back.contains(1001) && !back.contains(5));
        let q = &rows(1, 8, 4)[..8];
        assert_eq!(back.search(q, 1, 32)?[0].0, 1000);
        let empty = HnswIndex::new(3, Metric::Ip, HnswParams::default())?;
        let back = HnswIndex::from_bytes(&empty.to_bytes())?;
        assert!(back.is_empty() && back.candidates(&[1.0, 0.0, 0.0], 3, 8)?.is_empty());
        Ok(())
    }

    /// Offset of layer 0's lists in the bytes of a `keep_rows=false` index of `n` nodes, `dim` 8.
    fn layer0_at(n: usize) -> usize {
        let header = 8 + 4 + 8 + 1 + 8 + 8 + 8 + 1 + 8;
        header + n * (8 + 1 + 1) + 1 + 4 + 8 + n * 8 + n * 4
    }

    #[test]
    fn corrupt_input_is_rejected() -> CoreResult<()> {
        let idx = sample(false)?;
        let n = idx.nodes();
        let bytes = idx.to_bytes();
        for cut in [0, 12, 40, layer0_at(n), bytes.len() - 1] {
            assert!(
                HnswIndex::from_bytes(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
        let mut version = bytes.clone();
        version[8] = 7;
        assert!(HnswIndex::from_bytes(&version).is_err());
        // node 0's first layer-0 neighbour made a node that does not exist
        let mut far = bytes.clone();
        let at = layer0_at(n);
        assert!(u32::from_le_bytes([far[at], far[at + 1], far[at + 2], far[at + 3]]) > 0);
        far[at + 4..at + 8].copy_from_slice(&(n as u32).to_le_bytes());
        let err = HnswIndex::from_bytes(&far).err().map(|e| e.to_string());
        assert!(
            err.is_some_and(|e| e.contains("links to")),
            "out-of-range neighbour"
        );
        // node 0's neighbour count over the capacity (2m = 8)
        let mut many = bytes.clone();
        many[at..at + 4].copy_from_slice(&9u32.to_le_bytes());
        let err = HnswIndex::from_bytes(&many).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("neighbours on layer 0")));
        // the entry point moved to a node that is not on its level
        let mut entry = bytes.clone();
        let e = layer0_at(n) - n * 12 - 8 - 4;
        entry[e..e + 4].copy_from_slice(&(n as u32 + 3).to_le_bytes());
        assert!(HnswIndex::from_bytes(&entry).is_err());
        assert!(HnswIndex::from_bytes(b"MGVECIDX\x01\x00\x00\x00").is_err());
        Ok(())
    }
}
