//! The byte format the index types save themselves in (`to_bytes` / `from_bytes`): an 8-byte magic
//! naming the type, a little-endian u32 format version, then fields and arrays, little-endian.
//!
//! Reading never trusts the bytes: every length is checked against what is left before anything is
//! allocated, so truncated or foreign input is an [`CoreError::InvalidInput`] naming what was being
//! read, never a panic or a huge allocation. The types check their own invariants on top
//! (ids unique, neighbour ids in range, lengths consistent).

use crate::errors::{CoreError, CoreResult};

/// A fixed-size little-endian value.
pub trait Scalar: Copy {
    /// Encoded size in bytes.
    const SIZE: usize;
    /// Writes `self` into `out` (`SIZE` bytes).
    fn put(self, out: &mut [u8]);
    /// Reads a value from `b` (`SIZE` bytes).
    fn get(b: &[u8]) -> Self;
}

macro_rules! scalar {
    ($($t:ty),*) => {$(
        impl Scalar for $t {
            const SIZE: usize = std::mem::size_of::<$t>();
            #[inline]
            fn put(self, out: &mut [u8]) {
                out.copy_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn get(b: &[u8]) -> Self {
                let mut a = [0u8; std::mem::size_of::<$t>()];
                a.copy_from_slice(b);
                <$t>::from_le_bytes(a)
            }
        }
    )*};
}

scalar!(u8, i8, u32, u64, f32);

/// Builds the bytes of one saved object.
#[derive(Debug)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    /// Starts with `magic` and `version`; `capacity` is a size hint.
    pub fn new(magic: &[u8; 8], version: u32, capacity: usize) -> Self {
        let mut w = Self {
            buf: Vec::with_capacity(capacity + 12),
        };
        w.buf.extend_from_slice(magic);
        w.put(version);
        w
    }

    /// Appends one value.
    pub fn put<T: Scalar>(&mut self, v: T) {
        let at = self.buf.len();
        self.buf.resize(at + T::SIZE, 0);
        v.put(&mut self.buf[at..]);
    }

    /// Appends a count (as u64).
    pub fn count(&mut self, n: usize) {
        self.put(n as u64);
    }

    /// Appends the values of `s` (no length: the reader knows it from earlier fields).
    pub fn slice<T: Scalar>(&mut self, s: &[T]) {
        let at = self.buf.len();
        self.buf.resize(at + s.len() * T::SIZE, 0);
        for (out, &v) in self.buf[at..].chunks_exact_mut(T::SIZE).zip(s) {
            v.put(out);
        }
    }

    /// Appends raw bytes.
    pub fn bytes(&mut self, b: &[u8]) {
        self.buf.extend_from_slice(b);
    }

    /// The finished bytes.
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads one saved object, checking every length against what is left.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
    at: usize,
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Checks the magic and version of `buf`, which should hold a saved `what`.
    pub fn open(
        buf: &'a [u8],
        magic: &[u8; 8],
        version: u32,
        what: &'static str,
    ) -> CoreResult<Self> {
        if buf.len() < 12 || &buf[..8] != magic {
            return Err(CoreError::invalid(format!(
                "not a saved {what} (wrong magic bytes or too short)"
            )));
        }
        let mut r = Self { buf, at: 8, what };
        let found: u32 = r.get("format version")?;
        if found != version {
            return Err(CoreError::invalid(format!(
                "saved {what} has format version {found}; this build reads version {version}"
            )));
        }
        Ok(r)
    }

    /// A "corrupt input" error about `field`.
    pub fn bad(&self, field: &str, why: impl std::fmt::Display) -> CoreError {
        CoreError::invalid(format!("saved {} is corrupt: {field}: {why}", self.what))
    }

    fn take(&mut self, n: usize, field: &str) -> CoreResult<&'a [u8]> {
        let left = self.buf.len() - self.at;
        if n > left {
            return Err(CoreError::invalid(format!(
                "saved {} is truncated: {field} needs {n} bytes, {left} left",
                self.what
            )));
        }
        let out = &self.buf[self.at..self.at + n];
        self.at += n;
        Ok(out)
    }

    /// One value.
    pub fn get<T: Scalar>(&mut self, field: &str) -> CoreResult<T> {
        Ok(T::get(self.take(T::SIZE, field)?))
    }

    /// A count written by [`Writer::count`], at most `max`.
    pub fn count(&mut self, field: &str, max: usize) -> CoreResult<usize> {
        let n: u64 = self.get(field)?;
        usize::try_from(n)
            .ok()
            .filter(|&n| n <= max)
            .ok_or_else(|| self.bad(field, format!("count {n} is over the limit {max}")))
    }

    /// `count` values. The bytes are checked to be there before anything is allocated.
    pub fn slice<T: Scalar>(&mut self, count: usize, field: &str) -> CoreResult<Vec<T>> {
        let n = count
            .checked_mul(T::SIZE)
            .ok_or_else(|| self.bad(field, "length overflows"))?;
        Ok(self
            .take(n, field)?
            .chunks_exact(T::SIZE)
            .map(T::get)
            .collect())
    }

    /// `n` raw bytes.
    pub fn bytes(&mut self, n: usize, field: &str) -> CoreResult<&'a [u8]> {
        self.take(n, field)
    }

    /// A 0/1 flag.
    pub fn flag(&mut self, field: &str) -> CoreResult<bool> {
        match self.get::<u8>(field)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.bad(field, format!("flag is {v}, not 0 or 1"))),
        }
    }

    /// Ends the read: every byte must have been used.
    pub fn finish(self) -> CoreResult<()> {
        let left = self.buf.len() - self.at;
        if left != 0 {
            return Err(self.bad("end", format!("{left} unexpected trailing bytes")));
        }
        Ok(())
    }
}

/// The product of `a` and `b`, or a corrupt-input error (a length field made up to overflow).
pub fn mul(r: &Reader<'_>, a: usize, b: usize, field: &str) -> CoreResult<usize> {
    a.checked_mul(b)
        .ok_or_else(|| r.bad(field, format!("{a} x {b} overflows")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAGIC: &[u8; 8] = b"TESTTEST";

    #[test]
    fn round_trip_of_values_and_arrays() -> CoreResult<()> {
        let mut w = Writer::new(MAGIC, 3, 0);
        w.put(7u8);
        w.count(3);
        w.slice(&[1.5f32, -2.0, 0.25]);
        w.slice(&[-127i8, 0, 127]);
        let bytes = w.finish();
        let mut r = Reader::open(&bytes, MAGIC, 3, "test")?;
        assert_eq!(r.get::<u8>("a")?, 7);
        let n = r.count("n", 10)?;
        assert_eq!(r.slice::<f32>(n, "f")?, vec![1.5, -2.0, 0.25]);
        assert_eq!(r.slice::<i8>(n, "i")?, vec![-127, 0, 127]);
        r.finish()
    }

    #[test]
    fn foreign_truncated_and_oversized_input_is_an_error() -> CoreResult<()> {
        assert!(Reader::open(b"short", MAGIC, 1, "test").is_err());
        assert!(Reader::open(b"OTHERMAGIC\x01\x00\x00\x00", MAGIC, 1, "test").is_err());
        let bytes = Writer::new(MAGIC, 2, 0).finish();
        let err = Reader::open(&bytes, MAGIC, 1, "test").err();
        assert!(err.is_some_and(|e| e.to_string().contains("format version 2")));
        let mut w = Writer::new(MAGIC, 1, 0);
        w.count(usize::MAX / 2);
        let bytes = w.finish();
        let mut r = Reader::open(&bytes, MAGIC, 1, "test")?;
        let n = r.count("n", usize::MAX)?;
        // a huge length is refused before any allocation
        assert!(r.slice::<u64>(n, "ids").is_err());
        let mut r = Reader::open(&bytes, MAGIC, 1, "test")?;
        assert!(r.count("n", 10).is_err());
        let mut w = Writer::new(MAGIC, 1, 0);
        w.put(2u8);
        let bytes = w.finish();
        let mut r = Reader::open(&bytes, MAGIC, 1, "test")?;
        assert!(r.flag("f").is_err());
        let r = Reader::open(&bytes, MAGIC, 1, "test")?;
        assert!(r.finish().is_err());
        Ok(())
    }
}
