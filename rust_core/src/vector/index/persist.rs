//! [`VectorIndex::to_bytes`] / [`VectorIndex::from_bytes`]: the rows, ids and int8 codes as they
//! are, so a restart does not re-quantise (format in `crate::codec`).

use super::{QuantStore, VectorIndex};
use crate::codec::{mul, Reader, Writer};
use crate::errors::CoreResult;
use crate::vector::Metric;

const MAGIC: &[u8; 8] = b"MGVECIDX";
const VERSION: u32 = 1;
/// Largest code magnitude `quant` writes (a -128 could saturate the AVX2 kernel).
const QMAX: i8 = 127;

fn metric_code(m: Metric) -> u8 {
    match m {
        Metric::Ip => 0,
        Metric::Cosine => 1,
    }
}

impl VectorIndex {
    /// The whole index as bytes (rows, ids, and the int8 codes when quantised).
    pub fn to_bytes(&self) -> Vec<u8> {
        let n = self.ids.len();
        let codes = self
            .quant
            .as_ref()
            .map_or(0, |q| q.codes.len() + q.scales.len() * 4);
        let mut w = Writer::new(MAGIC, VERSION, 64 + n * 8 + self.data.len() * 4 + codes);
        w.count(self.dim);
        w.put(metric_code(self.metric));
        w.count(self.rerank);
        w.count(n);
        w.put(u8::from(self.quant.is_some()));
        w.slice(&self.ids);
        w.slice(&self.data);
        if let Some(q) = &self.quant {
            w.slice(&q.codes);
            w.slice(&q.scales);
        }
        w.finish()
    }

    /// An index saved by [`VectorIndex::to_bytes`]. Input that is truncated, of another type or
    /// version, or inconsistent (repeated ids, non-finite values, codes out of range) is an error.
    pub fn from_bytes(bytes: &[u8]) -> CoreResult<Self> {
        let mut r = Reader::open(bytes, MAGIC, VERSION, "VectorIndex")?;
        let dim = r.count("dim", 1 << 20)?;
        let metric = match r.get::<u8>("metric")? {
            0 => Metric::Ip,
            1 => Metric::Cosine,
            v => return Err(r.bad("metric", format!("unknown code {v}"))),
        };
        let rerank = r.count("rerank", usize::MAX)?;
        let n = r.count("rows", usize::MAX)?;
        let quantized = r.flag("quantized")?;
        let ids: Vec<u64> = r.slice(n, "ids")?;
        let data: Vec<f32> = r.slice(mul(&r, n, dim, "rows")?, "rows")?;
        let quant = if quantized {
            let codes: Vec<i8> = r.slice(n * dim, "int8 codes")?;
            let scales: Vec<f32> = r.slice(n, "int8 scales")?;
            if codes.iter().any(|&c| c < -QMAX) {
                return Err(r.bad("int8 codes", "a code is out of [-127, 127]"));
            }
            if scales.iter().any(|s| !(s.is_finite() && *s >= 0.0)) {
                return Err(r.bad("int8 scales", "a scale is negative or not finite"));
            }
            Some(QuantStore { codes, scales })
        } else {
            None
        };
        r.finish()?;
        let mut index = Self::new(dim, metric).map_err(|e| r_bad("dim", e))?;
        index.set_rerank(rerank).map_err(|e| r_bad("rerank", e))?;
        if let Some(i) = data.iter().position(|x| !x.is_finite()) {
            return Err(r_bad(
                "rows",
                format!("value {} at {i} is not finite", data[i]),
            ));
        }
        index.slots.reserve(n);
        for (slot, &id) in ids.iter().enumerate() {
            if index.slots.insert(id, slot).is_some() {
                return Err(r_bad("ids", format!("id {id} appears twice")));
            }
        }
        index.ids = ids;
        index.data = data;
        index.quant = quant;
        Ok(index)
    }
}

/// The corrupt-input error after the reader is finished.
fn r_bad(field: &str, why: impl std::fmt::Display) -> crate::errors::CoreError {
    crate::errors::CoreError::invalid(format!("saved VectorIndex is corrupt: {field}: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(quantized: bool) -> CoreResult<VectorIndex> {
        let mut idx = VectorIndex::new(3, Metric::Cosine)?;
        idx.add(
            &[10, 20, 30, 40],
            &[1.0, 0.0, 0.5, 0.2, 0.9, 0.1, -0.3, 0.3, 0.9, 0.7, 0.7, 0.0],
        )?;
        idx.remove(&[20]);
        idx.set_quantized(quantized);
        idx.set_rerank(2)?;
        Ok(idx)
    }

    #[test]
    fn round_trip_answers_the_same() -> CoreResult<()> {
        for quantized in [false, true] {
            let idx = sample(quantized)?;
            let back = VectorIndex::from_bytes(&idx.to_bytes())?;
            assert_eq!(back.ids(), idx.ids());
            assert_eq!(back.is_quantized(), quantized);
            assert_eq!(back.rerank(), 2);
            assert_eq!(back.metric(), Metric::Cosine);
            let q = [0.4, 0.5, 0.6];
            assert_eq!(back.search(&q, 3, None)?, idx.search(&q, 3, None)?);
            assert_eq!(
                back.search(&q, 2, Some(&[40, 10]))?,
                idx.search(&q, 2, Some(&[40, 10]))?
            );
            assert_eq!(back.get(30), idx.get(30));
            assert_eq!(back.to_bytes(), idx.to_bytes());
        }
        let empty = VectorIndex::new(5, Metric::Ip)?;
        let back = VectorIndex::from_bytes(&empty.to_bytes())?;
        assert!(back.is_empty() && back.dim() == 5);
        Ok(())
    }

    #[test]
    fn corrupt_input_is_rejected() -> CoreResult<()> {
        let bytes = sample(true)?.to_bytes();
        for cut in [0, 5, 12, 30, bytes.len() - 1] {
            let err = VectorIndex::from_bytes(&bytes[..cut]).err();
            assert!(err.is_some(), "cut at {cut}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(VectorIndex::from_bytes(&longer).is_err());
        let mut version = bytes.clone();
        version[8] = 9;
        let err = VectorIndex::from_bytes(&version)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("format version 9")));
        // the second id (after header: 8 magic + 4 version + 8 dim + 1 metric + 8 rerank + 8 n + 1
        // flag = 38) made equal to the first
        let mut twice = bytes.clone();
        let first: [u8; 8] = twice[38..46].try_into().map_err(|_| r_bad("t", "t"))?;
        twice[46..54].copy_from_slice(&first);
        let err = VectorIndex::from_bytes(&twice).err().map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("appears twice")));
        let mut nan = bytes.clone();
        nan[62..66].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(VectorIndex::from_bytes(&nan).is_err());
        assert!(VectorIndex::from_bytes(b"MGBM25IX\x01\x00\x00\x00").is_err());
        Ok(())
    }
}
