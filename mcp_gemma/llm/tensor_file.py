"""Read and write safetensors files a tensor (or a block of rows) at a time.

``safetensors.safe_open`` maps the whole file; every page a load touches then counts as resident
until the handle closes, so reading a 300 MB int8 cache through it peaks at the cache's size on top
of the copies the Rust core keeps. Reading each tensor (or a block of its rows) into a fresh buffer
with ``readinto`` leaves only that buffer as the transient: the load's peak stays near what remains
resident. Writing streams the same way, so converting or quantising a model never holds all of
its weights at once.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterator
from io import BufferedReader
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import NDArray

_DTYPES = {"F32": "<f4", "F16": "<f2", "I8": "i1", "U8": "u1", "I32": "<i4", "I64": "<i8"}
_MAX_HEADER = 100 << 20


class TensorFile:
    """An open safetensors file: its metadata, tensor names and shapes, and reads by name."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._handle: BufferedReader = path.open("rb")
        try:
            (size,) = struct.unpack("<Q", self._handle.read(8))
            if size > _MAX_HEADER:
                raise ValueError(f"header of {size} bytes")
            header: dict[str, Any] = json.loads(self._handle.read(size))
        except BaseException:
            self._handle.close()
            raise
        self.metadata: dict[str, str] = header.pop("__metadata__", None) or {}
        self._entries = header
        self._data = 8 + size

    def __enter__(self) -> TensorFile:
        return self

    def __exit__(self, *_: object) -> None:
        self._handle.close()

    def keys(self) -> list[str]:
        """The tensor names."""
        return list(self._entries)

    def shape(self, name: str) -> tuple[int, ...]:
        """The shape of tensor ``name``."""
        return tuple(int(d) for d in self._entries[name]["shape"])

    def read(self, name: str, rows: tuple[int, int] | None = None) -> NDArray[Any]:
        """Tensor ``name`` (or its rows ``first:last``) as a new C-contiguous numpy array."""
        import numpy as np

        entry = self._entries[name]
        dtype = np.dtype(_DTYPES[entry["dtype"]])
        shape = self.shape(name)
        begin, end = (int(x) for x in entry["data_offsets"])
        if end - begin != dtype.itemsize * math.prod(shape):
            raise ValueError(f"tensor {name}: offsets do not match its shape")
        if rows is not None:
            first, last = max(0, rows[0]), min(shape[0], rows[1])
            row_bytes = dtype.itemsize * math.prod(shape[1:])
            begin, shape = begin + first * row_bytes, (max(0, last - first), *shape[1:])
        out: NDArray[Any] = np.empty(shape, dtype=dtype)
        self._handle.seek(self._data + begin)
        if out.nbytes and self._handle.readinto(out.data.cast("B")) != out.nbytes:
            raise ValueError(f"tensor {name} is truncated")
        return out


def f32(array: NDArray[Any]) -> NDArray[np.float32]:
    """``array`` as contiguous float32 (no copy when it already is)."""
    import numpy as np

    return np.ascontiguousarray(array, dtype=np.float32)


def write_tensors(
    path: Path,
    specs: list[tuple[str, str, tuple[int, ...]]],
    chunks: Iterator[NDArray[Any]],
    metadata: dict[str, str],
) -> None:
    """A safetensors file of the tensors ``specs`` (name, dtype code such as "F32", shape), in
    that order, whose bytes come from ``chunks``: each tensor's rows in one or more arrays, so no
    tensor needs to be whole in memory. Raises ``ValueError`` when the chunks do not fit the specs."""
    import numpy as np

    header: dict[str, Any] = {"__metadata__": metadata}
    offset = 0
    for name, code, shape in specs:
        n_bytes = np.dtype(_DTYPES[code]).itemsize * math.prod(shape)
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + n_bytes]}
        offset += n_bytes
    encoded = json.dumps(header, separators=(",", ":")).encode("utf-8")
    encoded += b" " * (-len(encoded) % 8)  # data 8-byte aligned, as safetensors writes it
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)))
        handle.write(encoded)
        for name, code, shape in specs:
            want = np.dtype(_DTYPES[code])
            left = want.itemsize * math.prod(shape)
            while left > 0:
                chunk = np.ascontiguousarray(next(chunks))
                if chunk.dtype != want or chunk.nbytes > left:
                    raise ValueError(
                        f"tensor {name}: a {chunk.dtype} chunk of {chunk.nbytes} bytes does not fit"
                    )
                handle.write(chunk.data.cast("B"))
                left -= chunk.nbytes
    if next(chunks, None) is not None:
        raise ValueError("more data than the tensors hold")
