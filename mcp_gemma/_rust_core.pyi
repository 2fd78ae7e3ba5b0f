"""Type stub for ``mcp_gemma._rust_core``, the Rust core (PyO3). Hand-written; checked by stubtest.

Every function that scans releases the GIL. Arrays are read in place (never copied) and must be
C-contiguous with the stated dtype; anything else raises ``ValueError`` naming the argument.
"""

import os
from collections.abc import Sequence
from typing import Literal, Self, final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "BM25Index",
    "BpeTokenizer",
    "F16Matrix",
    "HnswIndex",
    "Q8Matrix",
    "RustCoreError",
    "TtlCache",
    "VectorIndex",
    "__version__",
    "add_layer_norm",
    "add_rms_norm",
    "bert_attention",
    "bias_gelu",
    "build_profile",
    "chunk_text",
    "fuse_rrf",
    "fuse_weighted",
    "gelu_times",
    "gqa_attention",
    "q8_avx512_built",
    "q8_kernel_level",
    "q8_matmul_stacked",
    "qk_norm_rope",
    "rms_norm",
    "simd_level",
    "tokenize",
    "topk",
    "topk_batch",
]

__version__: str
"""Version of the Rust crate (from Cargo.toml)."""

build_profile: Literal["release", "debug"]
"""Cargo profile the extension was built with; benchmarks refuse "debug"."""

q8_avx512_built: bool
"""Whether the compiler that built this had the AVX-512 intrinsics (Rust 1.89+), so the int8 AVX-512
VNNI kernel is in it (it runs only where the CPU has AVX-512 F/BW/VNNI)."""

class RustCoreError(Exception):
    """An internal failure of the Rust core (a bug, not bad input)."""

def simd_level() -> Literal["avx2", "neon", "scalar"]:
    """The instruction set the kernels use on this machine."""

def bias_gelu(x: NDArray[np.float32], bias: NDArray[np.float32]) -> None:
    """``x = gelu(x + bias)`` in place (exact erf GELU), ``x`` 2-d with ``len(bias)`` columns."""

def add_layer_norm(
    x: NDArray[np.float32],
    bias: NDArray[np.float32],
    residual: NDArray[np.float32],
    weight: NDArray[np.float32],
    shift: NDArray[np.float32],
    eps: float,
) -> None:
    """``x = layer_norm(x + bias + residual) * weight + shift`` in place, row by row."""

def bert_attention(qkv: NDArray[np.float32], lengths: Sequence[int], heads: int) -> NDArray[np.float32]:
    """Multi-head self-attention of packed texts: ``qkv`` (tokens, 3·hidden), the texts consecutive
    runs of ``lengths`` rows, each attending to itself only; returns (tokens, hidden)."""

def rms_norm(
    x: NDArray[np.float32], scale: NDArray[np.float32], eps: float, threads: int | None = None
) -> NDArray[np.float32]:
    """``x / sqrt(mean(x², axis=-1) + eps) * scale`` for 2-d ``x``, with numpy's arithmetic
    (pairwise sum of squares) so the same bits; rows split across the pool of ``threads``."""

def add_rms_norm(
    h: NDArray[np.float32],
    y: NDArray[np.float32],
    scale: NDArray[np.float32],
    eps: float,
    threads: int | None = None,
) -> NDArray[np.float32]:
    """``h + rms_norm(y, scale, eps)`` (a new array), the same bits as numpy."""

def qk_norm_rope(
    qkv: NDArray[np.float32],
    scale: NDArray[np.float32],
    cos: NDArray[np.float32],
    sin: NDArray[np.float32],
    eps: float,
    threads: int | None = None,
) -> NDArray[np.float32]:
    """The first ``heads`` heads of each ``qkv`` row (n, ≥ heads · head_dim), each RMS-normed with
    its row of ``scale`` (heads, head_dim) then rotated, ``y · cos + swap_halves(y) · sin`` with
    ``cos``/``sin`` (n, head_dim): (heads, n, head_dim)."""

def gelu_times(gate_up: NDArray[np.float32], threads: int | None = None) -> NDArray[np.float32]:
    """``gelu(gate) · up`` (gelu's tanh form, within a few ulp) for the rows of a fused ``gate | up``
    projection (n, 2 · half): (n, half), rows split across the pool of ``threads``."""

def gqa_attention(
    q: NDArray[np.float32],
    keys: NDArray[np.float32],
    values: NDArray[np.float32],
    start: int,
    window: int | None,
    scale: float,
    threads: int | None = None,
) -> NDArray[np.float32]:
    """Causal grouped-query attention of ``q`` (heads, n, head_dim) at positions ``start..start + n``
    against the caches ``keys``/``values`` (kv_heads, capacity, head_dim), each query seeing the last
    ``window`` keys up to itself (all for None), scores ``scale · q·k``: (n, heads · head_dim)."""

def q8_matmul_stacked(
    mats: Sequence[Q8Matrix], x: NDArray[np.float32], threads: int | None = None
) -> NDArray[np.float32]:
    """``x @ vstack(mats).T`` for matrices of one column count stacked by rows: (n, Σ rows), in one
    pass over the pool of ``threads``; each row's value is its own matrix's ``matmul``'s, bit for bit."""

def q8_kernel_level() -> Literal["avx512_vnni", "avx2", "portable"]:
    """The kernels the int8 (``Q8Matrix``) products of several rows and the int8 index scan use on
    this machine; ``MCP_GEMMA_NO_AVX512`` set in the environment keeps AVX2."""

def topk(
    matrix: NDArray[np.float32],
    query: NDArray[np.float32],
    k: int,
    metric: Literal["ip", "cosine"] = "ip",
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Exact top-k rows of ``matrix`` (n, d) for ``query`` (d,): (indices, scores), best first."""

def topk_batch(
    matrix: NDArray[np.float32],
    queries: NDArray[np.float32],
    k: int,
    metric: Literal["ip", "cosine"] = "ip",
) -> tuple[NDArray[np.int64], NDArray[np.float32]]:
    """Exact top-k for each row of ``queries`` (m, d): indices and scores of shape (m, min(k, n))."""

@final
class VectorIndex:
    """Rust-owned f32 rows keyed by uint64 ids; exact search, optionally int8 first pass + f32 re-rank."""

    def __new__(
        cls,
        dim: int,
        metric: Literal["ip", "cosine"] = "cosine",
        quantize: bool = False,
        rerank: int = 4,
    ) -> Self:
        """An empty index; ``quantize`` scans int8 codes, then re-ranks the best ``k * rerank`` in f32."""

    def to_bytes(self) -> bytes:
        """The whole index (ids, f32 rows, int8 codes) as versioned bytes (GIL released)."""

    @staticmethod
    def from_bytes(data: bytes, start: int = 0, stop: int | None = None) -> VectorIndex:
        """An index saved by ``to_bytes``, read from ``data[start:stop]`` without a copy (GIL released).

        Truncated, foreign, other-version or inconsistent bytes raise ``ValueError``.
        """

    def add(self, ids: NDArray[np.uint64], vectors: NDArray[np.float32]) -> None:
        """Upsert rows (an existing id is replaced); cosine normalises them (zero rows rejected). Atomic."""

    def remove(self, ids: NDArray[np.uint64]) -> int:
        """Remove ids (unknown ones are ignored); returns how many were present."""

    def search(
        self, query: NDArray[np.float32], k: int, allow: NDArray[np.uint64] | None = None
    ) -> tuple[NDArray[np.uint64], NDArray[np.float32]]:
        """Best ``k`` (ids, scores), best first; ``allow`` restricts the scan to those ids."""

    def search_batch(
        self, queries: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.uint64], NDArray[np.float32]]:
        """``search`` for each row of ``queries`` (m, dim): arrays of shape (m, min(k, len))."""

    def get(self, id: int) -> NDArray[np.float32] | None:
        """A copy of the stored row of ``id`` (unit length for cosine indexes), or None."""

    def snapshot(self) -> tuple[NDArray[np.uint64], NDArray[np.float32]]:
        """Every id and its stored row (unit length for cosine), read at one moment: (n,), (n, dim)."""

    def contains(self, id: int) -> bool:
        """Whether ``id`` is stored."""

    def __contains__(self, id: int, /) -> bool:
        """Whether ``id`` is stored."""

    def ids(self) -> NDArray[np.uint64]:
        """All stored ids, in storage order."""

    def set_quantized(self, on: bool) -> None:
        """Build (True) or drop (False) the int8 codes used for the first pass."""

    def __len__(self) -> int:
        """Number of stored rows."""

    @property
    def dim(self) -> int:
        """Row width."""

    @property
    def metric(self) -> Literal["ip", "cosine"]:
        """Similarity measure."""

    @property
    def nbytes(self) -> int:
        """Bytes held by rows, ids and int8 codes."""

    @property
    def quantized(self) -> bool:
        """Whether searches scan int8 codes first."""

    @property
    def rerank(self) -> int:
        """Re-rank depth multiplier used when quantised."""

@final
class HnswIndex:
    """Approximate nearest-neighbour index (HNSW) keyed by uint64 ids, for corpora too large to scan.

    The graph is built and walked on int8 codes; the ``ef`` final candidates are re-ranked on the f32
    rows, so returned scores are exact. ``add`` links rows in parallel with the GIL released. Removed
    or replaced rows are tombstones: they still route searches but are never returned.
    """

    def __new__(
        cls,
        dim: int,
        metric: Literal["ip", "cosine"] = "cosine",
        m: int = 16,
        ef_construction: int = 200,
        seed: int = 0,
        keep_rows: bool = True,
    ) -> Self:
        """An empty index: ``m`` links per node (``2m`` on layer 0), ``ef_construction`` build width.

        ``keep_rows=False`` stores int8 codes and the graph only (a quarter of the memory): ``search``
        then refuses, and ``candidates`` gives ids for the caller to re-rank on rows it keeps itself.
        """

    def to_bytes(self) -> bytes:
        """The whole index (ids, tombstones, codes, rows if kept, neighbour lists) as versioned bytes."""

    @staticmethod
    def from_bytes(data: bytes, start: int = 0, stop: int | None = None) -> HnswIndex:
        """An index saved by ``to_bytes``, read from ``data[start:stop]`` without a copy (GIL released).

        Truncated, foreign, other-version or inconsistent bytes raise ``ValueError``.
        """

    def add(self, ids: NDArray[np.uint64], vectors: NDArray[np.float32]) -> None:
        """Upsert rows (a replaced id leaves a tombstone); cosine normalises them. Checked first."""

    def remove(self, ids: NDArray[np.uint64]) -> int:
        """Tombstone ids (unknown ones are ignored); returns how many were live."""

    def search(
        self, query: NDArray[np.float32], k: int, ef: int = 64
    ) -> tuple[NDArray[np.uint64], NDArray[np.float32]]:
        """Approximate best ``k`` (ids, exact scores), best first; a larger ``ef`` buys recall with time."""

    def candidates(self, query: NDArray[np.float32], want: int, ef: int = 64) -> NDArray[np.uint64]:
        """Live ids of the bottom layer's candidate list (``ef`` wide, at least ``want`` when that many
        live), best first by the int8 score; for a caller that re-ranks them on exact rows."""

    def search_batch(
        self, queries: NDArray[np.float32], k: int, ef: int = 64
    ) -> tuple[NDArray[np.uint64], NDArray[np.float32]]:
        """``search`` for each row of ``queries`` (m, dim), in parallel: arrays of shape (m, min(k, len))."""

    def contains(self, id: int) -> bool:
        """Whether ``id`` is stored and live."""

    def __contains__(self, id: int, /) -> bool:
        """Whether ``id`` is stored and live."""

    def __len__(self) -> int:
        """Number of live rows."""

    @property
    def dim(self) -> int:
        """Row width."""

    @property
    def metric(self) -> Literal["ip", "cosine"]:
        """Similarity measure."""

    @property
    def m(self) -> int:
        """Links per node on the upper layers."""

    @property
    def ef_construction(self) -> int:
        """Candidate list size used while linking rows."""

    @property
    def keep_rows(self) -> bool:
        """Whether f32 rows are stored (for ``search``'s exact re-rank)."""

    @property
    def nbytes(self) -> int:
        """Bytes held by f32 rows, int8 codes, ids and the graph."""

    @property
    def tombstones(self) -> int:
        """Removed or replaced rows still kept in the graph."""

@final
class F16Matrix:
    """Immutable IEEE binary16 weight matrix whose products run in float32 (FMA where available)."""

    @staticmethod
    def from_bits(bits: NDArray[np.uint16]) -> F16Matrix:
        """From binary16 bit patterns, (rows, cols): ``w.astype(np.float16).view(np.uint16)``; finite."""

    def matmul(self, x: NDArray[np.float32], threads: int | None = None) -> NDArray[np.float32]:
        """``x · Wᵀ`` for x of shape (m, cols): (m, rows), every product and sum in float32.

        ``threads=1`` runs on the calling thread; another number on a pool of that many workers;
        ``None`` on the shared pool (small products stay on the calling thread either way).
        """

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""

    @property
    def nbytes(self) -> int:
        """Bytes held by the weights (stored in panels of 16 rows, the last one zero-padded)."""

@final
class Q8Matrix:
    """Immutable int8 matrix with one float32 scale per 32 columns (the GGUF ``Q8_0`` layout)."""

    @staticmethod
    def quantize(weights: NDArray[np.float32]) -> Q8Matrix:
        """Quantise a (rows, cols) float32 matrix; cols must be a multiple of 32, values finite."""

    @staticmethod
    def from_parts(codes: NDArray[np.int8], scales: NDArray[np.float32]) -> Q8Matrix:
        """Rebuild from ``codes()`` (rows, cols) and ``scales()`` (rows, cols / 32)."""

    def matmul(self, x: NDArray[np.float32], threads: int | None = None) -> NDArray[np.float32]:
        """``x · Wᵀ`` for x of shape (m, cols): (m, rows). Each x row is quantised in blocks of 32.

        ``threads`` runs the product on a pool of that many workers (kept per size for the process);
        ``None`` uses the shared pool (``RAYON_NUM_THREADS``, default every core).
        """

    def gather(self, ids: NDArray[np.int64]) -> NDArray[np.float32]:
        """Dequantised copies of the rows ``ids``: (len(ids), cols)."""

    def codes(self) -> NDArray[np.int8]:
        """A copy of the int8 codes, (rows, cols)."""

    def scales(self) -> NDArray[np.float32]:
        """A copy of the block scales, (rows, cols / 32)."""

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""

    @property
    def nbytes(self) -> int:
        """Bytes held by codes and scales."""

@final
class BpeTokenizer:
    """Byte-fallback BPE with Hugging Face ``tokenizers``' results for Gemma's tokenizer (immutable).

    Added tokens are split out first (leftmost-longest), spaces become ``▁``, each segment merges by
    rank, characters outside the vocabulary become ``<0xNN>`` tokens, the BOS goes in front.
    """

    @staticmethod
    def build(
        vocab: Sequence[tuple[str, int]],
        merges: Sequence[tuple[str, str]],
        added: Sequence[tuple[int, str, bool]],
        unk_token: str | None,
        bos_token: str | None,
    ) -> BpeTokenizer:
        """From ``tokenizer.json``'s parts: (token, id) pairs, merges by rank, (id, text, special)."""

    @staticmethod
    def load(path: str | os.PathLike[str]) -> BpeTokenizer:
        """Read a file written by :meth:`save`; a foreign, truncated or corrupt file is a ValueError."""

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the compact binary file (versioned, checksummed; atomically replaced)."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        """Token ids of ``text``, the BOS first when ``add_special_tokens`` (GIL released when long)."""

    def decode(self, ids: Sequence[int], skip_special_tokens: bool = True) -> str:
        """Text of ``ids``: unknown ids dropped, special tokens too when ``skip_special_tokens``."""

    def token_to_id(self, token: str) -> int | None:
        """The id of a token's text, or None."""

    def pieces(self) -> list[str | None]:
        """Each id's text as decoding writes it alone; None for special tokens."""

    @property
    def vocab_size(self) -> int:
        """Ids run from 0 to this."""

@final
class BM25Index:
    """In-memory BM25 keyword index over documents keyed by non-negative int ids."""

    def __new__(cls, k1: float = 1.2, b: float = 0.75, analyzer: str = "plain") -> Self:
        """An empty index with the usual BM25 parameters; ``analyzer`` is "plain" or "english"."""

    def to_bytes(self) -> bytes:
        """The whole index (parameters, vocabulary, postings, lengths) as versioned bytes."""

    @staticmethod
    def from_bytes(data: bytes, start: int = 0, stop: int | None = None) -> BM25Index:
        """An index saved by ``to_bytes``, read from ``data[start:stop]`` without a copy (GIL released).

        Truncated, foreign, other-version or inconsistent bytes raise ``ValueError``.
        """

    def add(self, id: int, text: str) -> None:
        """Index ``text`` under ``id``, replacing an earlier text of that id."""

    def add_many(self, ids: Sequence[int], texts: Sequence[str]) -> None:
        """``add`` for each pair; tokenises with the GIL released."""

    def remove(self, id: int) -> bool:
        """Drop ``id``; returns whether it was present."""

    def search(
        self, query: str, k: int, allow: NDArray[np.uint64] | None = None
    ) -> tuple[NDArray[np.uint64], NDArray[np.float32]]:
        """Best ``k`` documents for ``query`` (ids, scores), best first; only ones sharing a term."""

    def scores(self, query: str, ids: NDArray[np.uint64]) -> NDArray[np.float32]:
        """BM25 score of ``query`` for each of ``ids`` in order (0 where no term is shared)."""

    def coverage(self, query: str, id: int) -> float:
        """Share of the query's IDF mass (unknown terms at the top IDF) that document ``id`` holds."""

    def coverage_many(self, query: str, ids: NDArray[np.uint64]) -> NDArray[np.float64]:
        """``coverage`` of each of ``ids`` in order, in float64 (GIL released); 0.0 for an id that is
        not indexed. Distinct query terms weigh BM25's IDF; a term no document has, the top IDF."""

    def max_score(self, query: str) -> float:
        """Upper bound of any score for ``query``: sum of idf * (k1 + 1) over its indexed terms."""

    @property
    def analyzer(self) -> str:
        """How texts and queries become terms: "plain" or "english"."""

    def __len__(self) -> int:
        """Number of documents."""

    def __contains__(self, id: int, /) -> bool:
        """Whether ``id`` is indexed."""

    @property
    def vocab_size(self) -> int:
        """Number of distinct terms in indexed documents."""

    @property
    def k1(self) -> float:
        """Term-frequency saturation."""

    @property
    def b(self) -> float:
        """Length normalisation."""

def tokenize(text: str, analyzer: str = "plain") -> list[str]:
    """The terms BM25Index indexes for ``text`` ("plain": lower-cased UAX #29 words; "english": words
    and identifier parts, stop words dropped, Snowball-stemmed)."""

def fuse_rrf(
    rankings: Sequence[Sequence[int]], k: int = 60, limit: int | None = None
) -> list[tuple[int, float]]:
    """Reciprocal rank fusion: score(id) = sum of 1 / (k + rank), rank from 1; best first, ties by id."""

def fuse_weighted(
    a: Sequence[tuple[int, float]], b: Sequence[tuple[int, float]], weight_b: float
) -> list[tuple[int, float]]:
    """Min-max normalise each list, then (1 - weight_b) * a + weight_b * b (missing id: 0); best first."""

def chunk_text(
    text: str, max_chars: int, overlap: int = 0, mode: Literal["sentence", "chars"] = "sentence"
) -> list[tuple[int, int]]:
    """Chunks of at most ``max_chars`` code points as [start, end) str offsets: ``text[s:e]`` is a chunk."""

@final
class TtlCache:
    """LRU cache of str -> bytes with an optional default TTL and per-entry TTLs; thread-safe."""

    def __new__(cls, capacity: int, ttl_seconds: float | None = None) -> Self:
        """At most ``capacity`` entries; ``ttl_seconds`` is the default lifetime (None: no expiry)."""

    def get(self, key: str) -> bytes | None:
        """The value, or None when absent or expired; a hit makes the entry most recently used."""

    def set(self, key: str, value: bytes, ttl_seconds: float | None = None) -> None:
        """Insert or replace; evicts the least recently used entry when full."""

    def delete(self, key: str) -> bool:
        """Remove ``key``; returns whether a live entry was removed."""

    def clear(self) -> None:
        """Remove everything (statistics are kept)."""

    def keys(self) -> list[str]:
        """Live keys, most recently used first."""

    def stats(self) -> dict[str, int]:
        """Counters: hits, misses, evictions, inserts, expirations."""

    def __len__(self) -> int:
        """Number of live entries."""

    def __contains__(self, key: str, /) -> bool:
        """Whether ``key`` is present and not expired (does not count as a hit)."""

    @property
    def capacity(self) -> int:
        """Maximum number of entries."""
