//! Checked views of numpy arguments and new numpy results, through the buffer protocol, with
//! messages that say what to do.
//!
//! Why not the `numpy` crate: it and its `ndarray` dependency sat on the critical path of the clean
//! release build (pyo3 -> numpy -> this crate), which is most of the README's first install line.
//! PyO3's `PyBuffer` gives the same view of an `ndarray`: numpy exports its data pointer, dtype (as
//! a `struct` format character), shape and strides, and the export keeps the memory alive and the
//! array unresizable until it is released. Results are arrays that `numpy.empty`/`numpy.zeros`
//! allocated, filled in place through their buffer, so a result is written once, not copied.
//!
//! What the `numpy` crate's borrow checker gave is kept by [`Borrow`]: while a call reads an array
//! no call may write it, and while a call writes one no call may read or write it (the same call's
//! other arguments included), with the same messages.

use std::ops::Range;
use std::sync::{Mutex, MutexGuard};

use pyo3::buffer::{PyBuffer, PyUntypedBuffer};
use pyo3::prelude::*;
use pyo3::pybacked::PyBackedBytes;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyTuple, PyType};

use crate::errors::CoreError;

/// An element type the bindings exchange with numpy.
pub trait Element: pyo3::buffer::Element + Send + Sync + 'static {
    /// numpy's name of the dtype.
    const NAME: &'static str;
    /// The `struct` format characters numpy exports this dtype as, in native byte order.
    const FORMATS: &'static [u8];
    /// The character after `=` (standard size) numpy exports it as when the data is not aligned.
    const STANDARD: u8;
    /// The numpy dtype object (looked up once).
    fn dtype(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>>;
}

macro_rules! element {
    ($t:ty, $name:literal, $formats:expr, $standard:expr) => {
        impl Element for $t {
            const NAME: &'static str = $name;
            const FORMATS: &'static [u8] = $formats;
            const STANDARD: u8 = $standard;
            fn dtype(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
                static DTYPE: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
                DTYPE
                    .get_or_try_init(py, || {
                        Ok::<_, PyErr>(numpy_attr(py, "dtype")?.call1(($name,))?.unbind())
                    })
                    .map(|d| d.bind(py))
            }
        }
    };
}

// numpy exports int64 as `l` and uint64 as `L` (a C long is 8 bytes on every 64-bit platform it
// builds for but Windows, where it exports `q`/`Q`); both spellings of each are accepted, and the
// item size is checked as well.
element!(f32, "float32", b"f", b'f');
element!(f64, "float64", b"d", b'd');
element!(u64, "uint64", b"LQ", b'Q');
element!(i64, "int64", b"lq", b'q');
element!(i8, "int8", b"b", b'b');
element!(u16, "uint16", b"H", b'H');

fn numpy_attr<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    py.import("numpy")?.getattr(name)
}

fn ndarray_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    static NDARRAY: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    NDARRAY.import(py, "numpy", "ndarray")
}

/// Whether numpy's buffer `format` is `T` in native byte order: `f` (or `@f`), or `=f` for data
/// that is not aligned. numpy writes `>f` for a big-endian float32 on a little-endian machine,
/// which must not read as f32 (PyO3's own `Element::is_compatible_format` would take it).
fn is_format_of<T: Element>(format: &[u8]) -> bool {
    match format {
        [c] | [b'@', c] => T::FORMATS.contains(c),
        [b'=', c] => *c == T::STANDARD,
        _ => false,
    }
}

/// A read-only, C-contiguous view of a numpy array of `T` with `ndim` dimensions, checked like the
/// `numpy` crate did (type, dimensions, dtype, layout, then borrows), with the same messages.
pub struct Array<T: Element> {
    buf: PyUntypedBuffer,
    ptr: *const T,
    _borrow: Borrow,
}

impl<T: Element> Array<T> {
    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        self.buf.shape()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.buf.item_count()
    }

    /// The elements in C order.
    pub fn as_slice(&self) -> &[T] {
        let len = self.buf.item_count();
        if len == 0 {
            return &[];
        }
        // SAFETY: `ptr` is the start of the buffer's `len` elements of `T`, aligned and
        // C-contiguous (checked in `checked_buffer`); the export in `self.buf` keeps that memory
        // alive and the array unresizable for as long as `self` lives, and the read borrow in
        // `self._borrow` keeps every writer in this module off it. Writes from other Python code
        // while the GIL is released are the caller's contract, as with numpy's own loops.
        unsafe { std::slice::from_raw_parts(self.ptr, len) }
    }
}

// SAFETY: the pointer is into the buffer `buf` exports, which is `Send` and `Sync` itself; `Array`
// only hands out shared slices of it, and `T` is `Sync`.
unsafe impl<T: Element> Send for Array<T> {}
// SAFETY: as for `Send`.
unsafe impl<T: Element> Sync for Array<T> {}

/// A writable, C-contiguous view of a numpy array of `T` (the kernels that work in place).
pub struct ArrayMut<T: Element> {
    buf: PyUntypedBuffer,
    ptr: *mut T,
    _borrow: Borrow,
}

impl<T: Element> ArrayMut<T> {
    /// The array's shape.
    pub fn shape(&self) -> &[usize] {
        self.buf.shape()
    }

    /// The elements in C order.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        let len = self.buf.item_count();
        if len == 0 {
            return &mut [];
        }
        // SAFETY: `ptr` is the start of the buffer's `len` elements of `T`, aligned, C-contiguous
        // and writable (checked in `writable`); the export keeps the memory alive, the write borrow
        // keeps every other view of this module off it, and `&mut self` makes this slice unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, len) }
    }
}

// SAFETY: the pointer is into the buffer `buf` exports (`Send` and `Sync`); a mutable slice is only
// handed out through `&mut self`, and `T` is `Send` and `Sync`.
unsafe impl<T: Element> Send for ArrayMut<T> {}
// SAFETY: as for `Send`; `&ArrayMut` gives no access to the elements.
unsafe impl<T: Element> Sync for ArrayMut<T> {}

/// The buffer of `obj`, checked to be a C-contiguous numpy array of `T` with `ndim` dimensions.
fn checked_buffer<T: Element>(
    obj: &Bound<'_, PyAny>,
    name: &str,
    ndim: usize,
) -> PyResult<PyUntypedBuffer> {
    let py = obj.py();
    if !obj.is_instance(ndarray_type(py)?)? {
        return Err(CoreError::invalid(format!(
            "{name} must be a numpy.ndarray of {}, got {}",
            std::any::type_name::<T>(),
            type_label(obj)
        ))
        .into());
    }
    let buf = match PyUntypedBuffer::get(obj) {
        Ok(buf) => buf,
        // numpy exports no buffer for some dtypes (datetime64, ...): none of them is `T`.
        Err(err) => return Err(unexported::<T>(obj, name, ndim).unwrap_or(err)),
    };
    if buf.dimensions() != ndim {
        return Err(wrong_ndim(name, ndim, buf.shape()));
    }
    if buf.item_size() != std::mem::size_of::<T>() || !is_format_of::<T>(buf.format().to_bytes()) {
        return Err(wrong_dtype::<T>(obj, name));
    }
    if !buf.is_c_contiguous() {
        return Err(CoreError::invalid(format!(
            "{name} must be C-contiguous; pass np.ascontiguousarray({name})"
        ))
        .into());
    }
    if !buf.buf_ptr().cast::<T>().is_aligned() {
        // (a `frombuffer` view at an odd offset; the numpy crate said "must be C-contiguous")
        return Err(CoreError::invalid(format!(
            "{name} must be C-contiguous and aligned for {}; pass {name}.copy()",
            T::NAME
        ))
        .into());
    }
    Ok(buf)
}

/// The message for an array whose buffer numpy would not export.
fn unexported<T: Element>(obj: &Bound<'_, PyAny>, name: &str, ndim: usize) -> Option<PyErr> {
    let shape: Vec<usize> = obj.getattr("shape").ok()?.extract().ok()?;
    if shape.len() != ndim {
        return Some(wrong_ndim(name, ndim, &shape));
    }
    Some(wrong_dtype::<T>(obj, name))
}

fn wrong_ndim(name: &str, ndim: usize, shape: &[usize]) -> PyErr {
    CoreError::invalid(format!(
        "{name} must be {ndim}-dimensional, got shape {shape:?}"
    ))
    .into()
}

fn wrong_dtype<T: Element>(obj: &Bound<'_, PyAny>, name: &str) -> PyErr {
    let got = obj
        .getattr("dtype")
        .and_then(|d| d.str())
        .map_or_else(|_| "?".to_owned(), |s| s.to_string());
    CoreError::invalid(format!(
        "{name} must have dtype {}, got {got}; convert with .astype(np.{})",
        T::NAME,
        T::NAME
    ))
    .into()
}

/// A read-only, C-contiguous view of a numpy array with element type `T` and `ndim` dimensions.
pub fn readonly<T: Element>(obj: &Bound<'_, PyAny>, name: &str, ndim: usize) -> PyResult<Array<T>> {
    let buf = checked_buffer::<T>(obj, name, ndim)?;
    let _borrow = read_borrow(&buf, name)?;
    let ptr = buf.buf_ptr().cast::<T>().cast_const();
    Ok(Array { buf, ptr, _borrow })
}

/// A writable, C-contiguous view of `obj` (checked like [`readonly`], then for being writable and
/// not in use by another view).
pub fn writable<T: Element>(
    obj: &Bound<'_, PyAny>,
    name: &str,
    ndim: usize,
) -> PyResult<ArrayMut<T>> {
    let buf = checked_buffer::<T>(obj, name, ndim)?;
    // The checks of `readonly` first, its read borrow included, as the numpy crate version did.
    drop(read_borrow(&buf, name)?);
    let in_use = |e: BorrowError| -> PyErr {
        CoreError::invalid(format!(
            "{name} must be writable and not in use elsewhere ({e})"
        ))
        .into()
    };
    if buf.readonly() {
        return Err(in_use(BorrowError::NotWriteable));
    }
    let _borrow = Borrow::new(byte_range(&buf), true).map_err(in_use)?;
    let ptr = buf.buf_ptr().cast::<T>();
    Ok(ArrayMut { buf, ptr, _borrow })
}

fn read_borrow(buf: &PyUntypedBuffer, name: &str) -> PyResult<Borrow> {
    Borrow::new(byte_range(buf), false)
        .map_err(|e| CoreError::invalid(format!("{name} is being written elsewhere ({e})")).into())
}

fn byte_range(buf: &PyUntypedBuffer) -> Range<usize> {
    let start = buf.buf_ptr() as usize;
    start..start + buf.len_bytes()
}

/// A new numpy array this call fills before returning it (nothing else can see it meanwhile).
pub struct NewArray<'py, T: Element> {
    array: Bound<'py, PyAny>,
    buf: PyBuffer<T>,
}

impl<'py, T: Element> NewArray<'py, T> {
    /// `numpy.zeros(shape, T)` (`zeroed`) or `numpy.empty(shape, T)`, to be filled through
    /// [`NewArray::as_mut_slice`].
    pub fn new(py: Python<'py>, shape: &[usize], zeroed: bool) -> PyResult<Self> {
        static ZEROS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        static EMPTY: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
        let (cell, name) = if zeroed {
            (&ZEROS, "zeros")
        } else {
            (&EMPTY, "empty")
        };
        let make = cell.get_or_try_init(py, || numpy_attr(py, name).map(Bound::unbind))?;
        let array = make
            .bind(py)
            .call1((PyTuple::new(py, shape)?, T::dtype(py)?))?;
        let buf = PyBuffer::<T>::get(&array)?;
        if buf.readonly() || !buf.is_c_contiguous() {
            return Err(CoreError::internal("numpy made a read-only or strided new array").into());
        }
        Ok(Self { array, buf })
    }

    /// The new array's elements in C order.
    pub fn as_mut_slice(&mut self) -> &mut [T] {
        let len = self.buf.item_count();
        if len == 0 {
            return &mut [];
        }
        // SAFETY: the array was made by `new` (aligned, C-contiguous, writable, `len` elements of
        // `T`), the export keeps it alive, and no one else holds a reference to it until `finish`
        // hands it out; `&mut self` makes the slice unique.
        unsafe { std::slice::from_raw_parts_mut(self.buf.buf_ptr().cast::<T>(), len) }
    }

    /// The filled array (its buffer export released).
    pub fn finish(self) -> Bound<'py, PyAny> {
        let Self { array, buf } = self;
        drop(buf);
        array
    }
}

/// A new numpy array of `shape` holding a copy of `data` (`data.len()` must be its size).
pub fn array_from<'py, T: Element>(
    py: Python<'py>,
    data: &[T],
    shape: &[usize],
) -> PyResult<Bound<'py, PyAny>> {
    let mut out = NewArray::<T>::new(py, shape, false)?;
    let dst = out.as_mut_slice();
    if dst.len() != data.len() {
        return Err(CoreError::internal(format!(
            "{} values for an array of shape {shape:?}",
            data.len()
        ))
        .into());
    }
    dst.copy_from_slice(data);
    Ok(out.finish())
}

/// A new 1-d numpy array holding a copy of `data`.
pub fn array1<'py, T: Element>(py: Python<'py>, data: &[T]) -> PyResult<Bound<'py, PyAny>> {
    array_from(py, data, &[data.len()])
}

/// The input rows `x` of a product with a `cols`-column weight matrix: a checked 2-d float32 view
/// and its row count.
pub fn input_rows(x: &Bound<'_, PyAny>, cols: usize) -> PyResult<(Array<f32>, usize)> {
    let xa = readonly::<f32>(x, "x", 2)?;
    let (m, got) = (xa.shape()[0], xa.shape()[1]);
    if got != cols {
        return Err(
            CoreError::invalid(format!("x has {got} columns but the matrix has {cols}")).into(),
        );
    }
    Ok((xa, m))
}

/// Owned copies of `ids` (uint64, 1-d) and `vectors` (float32, `ids.len() × dim`): the upsert
/// arguments of the index classes, checked before any lock is taken.
pub fn ids_and_rows(
    ids: &Bound<'_, PyAny>,
    vectors: &Bound<'_, PyAny>,
    dim: usize,
) -> PyResult<(Vec<u64>, Vec<f32>)> {
    let ids_arr = readonly::<u64>(ids, "ids", 1)?;
    let vec_arr = readonly::<f32>(vectors, "vectors", 2)?;
    if vec_arr.shape()[1] != dim || vec_arr.shape()[0] != ids_arr.len() {
        return Err(CoreError::invalid(format!(
            "vectors must have shape ({}, {dim}) to match ids, got {:?}",
            ids_arr.len(),
            vec_arr.shape()
        ))
        .into());
    }
    Ok((ids_arr.as_slice().to_vec(), vec_arr.as_slice().to_vec()))
}

/// An owned copy of a 1-d uint64 id array.
pub fn id_list(ids: &Bound<'_, PyAny>) -> PyResult<Vec<u64>> {
    Ok(readonly::<u64>(ids, "ids", 1)?.as_slice().to_vec())
}

/// An owned copy of a 1-d float32 query vector.
pub fn query_row(query: &Bound<'_, PyAny>) -> PyResult<Vec<f32>> {
    Ok(readonly::<f32>(query, "query", 1)?.as_slice().to_vec())
}

fn type_label(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map_or_else(|_| "an unknown type".to_owned(), |n| n.to_string())
}

/// Why a view could not be taken (the `numpy` crate's words).
#[derive(Debug, Clone, Copy)]
enum BorrowError {
    AlreadyBorrowed,
    NotWriteable,
}

impl std::fmt::Display for BorrowError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::AlreadyBorrowed => "The given array is already borrowed",
            Self::NotWriteable => "The given array is not writeable",
        })
    }
}

/// The array memory views of this module hold now, by byte range: a view may read memory no view
/// writes, and write memory no other view reads or writes. Views live for one call, so the list is
/// short; it has its own lock because calls run with the GIL released.
struct Borrows {
    next: u64,
    live: Vec<(u64, Range<usize>, bool)>,
}

static BORROWS: Mutex<Borrows> = Mutex::new(Borrows {
    next: 0,
    live: Vec::new(),
});

fn borrows() -> MutexGuard<'static, Borrows> {
    // The list is consistent after any panic (each change is one push or one removal).
    BORROWS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One view's entry in [`BORROWS`], removed on drop; empty arrays hold none.
struct Borrow(Option<u64>);

impl Borrow {
    fn new(range: Range<usize>, write: bool) -> Result<Self, BorrowError> {
        if range.is_empty() {
            return Ok(Self(None));
        }
        let mut b = borrows();
        let clash = b
            .live
            .iter()
            .any(|(_, r, w)| (write || *w) && r.start < range.end && range.start < r.end);
        if clash {
            return Err(BorrowError::AlreadyBorrowed);
        }
        let id = b.next;
        b.next += 1;
        b.live.push((id, range, write));
        Ok(Self(Some(id)))
    }
}

impl Drop for Borrow {
    fn drop(&mut self) {
        if let Some(id) = self.0 {
            let mut b = borrows();
            if let Some(i) = b.live.iter().position(|(j, _, _)| *j == id) {
                b.live.swap_remove(i);
            }
        }
    }
}

/// `data[start:stop]` of a `bytes` object, held without a copy and usable without the GIL (the
/// saved-index loaders read a section of a larger file this way).
pub fn byte_section(
    data: &Bound<'_, PyAny>,
    start: i64,
    stop: Option<i64>,
) -> PyResult<(PyBackedBytes, std::ops::Range<usize>)> {
    let bytes = data
        .cast::<PyBytes>()
        .map_err(|_| CoreError::invalid(format!("data must be bytes, got {}", type_label(data))))?;
    let len = bytes.as_bytes().len();
    let stop = stop.unwrap_or(len as i64);
    let (Ok(a), Ok(b)) = (usize::try_from(start), usize::try_from(stop)) else {
        return Err(CoreError::invalid(format!(
            "start and stop must be >= 0, got {start}, {stop}"
        ))
        .into());
    };
    if a > b || b > len {
        return Err(CoreError::invalid(format!(
            "section [{a}, {b}) is not within the {len} bytes given"
        ))
        .into());
    }
    Ok((PyBackedBytes::from(bytes.clone()), a..b))
}

/// `decode(data[start..stop])` with the GIL released: the `from_bytes` of every saved index, which
/// reads its section of one large `bytes` object in place.
pub fn decode_section<T: Send>(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    start: i64,
    stop: Option<i64>,
    decode: impl FnOnce(&[u8]) -> Result<T, CoreError> + Send,
) -> PyResult<T> {
    let (data, range) = byte_section(data, start, stop)?;
    Ok(py.detach(|| decode(&data[range]))?)
}
