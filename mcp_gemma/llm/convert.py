"""Turn a Gemma GGUF file into an ordinary dense checkpoint directory, once.

transformers can read GGUF but takes about a minute per load and refuses ``save_pretrained``
on the result, so the first load dequantises the tensors with the ``gguf`` package's numpy
decoders (every type llama.cpp writes for Gemma 3: F32, F16, BF16, Q8_0, Q4_0…Q5_1, Q4_K, Q5_K,
Q6_K, …), writes them as float32 safetensors next to a ``config.json`` and the tokenizer
(``gguf_tokenizer.py``), and every later load reads that directory in seconds. None of it imports
torch or transformers, so the lean install converts too. The directory is built under a temporary
name and renamed into place, so a crash never leaves a half-written cache; a marker file written
last records what it was built from.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import struct
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mcp_gemma.errors import ModelUnavailableError

logger = logging.getLogger(__name__)

MARKER = "mcp_gemma_cache.json"
WEIGHTS = "model.safetensors"
Q8_WEIGHTS = "model.q8_0.safetensors"  # built from WEIGHTS by q8.py
CACHE_FORMAT = 2  # 2: built without transformers (numpy dequantisation, our config and tokenizer)
REQUIRED_FILES = ("config.json", "tokenizer.json", WEIGHTS, MARKER)

# gguf tensor name (per block "blk.N.") -> transformers Gemma 3 parameter name
_BLOCK_NAMES = {
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm",
    "attn_norm": "input_layernorm",
    "post_attention_norm": "post_attention_layernorm",
    "ffn_norm": "pre_feedforward_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_TOP_NAMES = {"token_embd": "model.embed_tokens", "output_norm": "model.norm"}
_BLOCK_RE = re.compile(r"^blk\.(\d+)\.(\w+)\.weight$")

Progress = Callable[[str], None]

_COUNTED_RE = re.compile(r"^(?P<label>.+): (?P<done>\d+)/(?P<total>\d+) (?P<unit>\w+)$")
PROGRESS_STEPS = 20
"""A long step (dequantising) reports at most this many times, plus once at its start."""


def counted(label: str, done: int, total: int, unit: str) -> str:
    """A progress message with a count, e.g. ``dequantising: 120/1067 MiB`` (see :func:`parse_counted`)."""
    return f"{label}: {done}/{total} {unit}"


def parse_counted(message: str) -> tuple[str, int, int, str] | None:
    """``(label, done, total, unit)`` of a :func:`counted` message; ``None`` for a plain one."""
    found = _COUNTED_RE.match(message)
    if found is None or int(found["total"]) <= 0:
        return None
    return found["label"], int(found["done"]), int(found["total"]), found["unit"]


def hf_tensor_name(gguf_name: str) -> str:
    """The transformers parameter name of a Gemma 3 GGUF tensor (``ValueError`` if unknown)."""
    match = _BLOCK_RE.match(gguf_name)
    if match:
        layer, part = match.groups()
        if part in _BLOCK_NAMES:
            return f"model.layers.{layer}.{_BLOCK_NAMES[part]}.weight"
    elif gguf_name.endswith(".weight") and gguf_name[: -len(".weight")] in _TOP_NAMES:
        return f"{_TOP_NAMES[gguf_name[: -len('.weight')]]}.weight"
    raise ValueError(f"unexpected tensor {gguf_name!r} in a Gemma 3 GGUF file")


def validate_checkpoint(path: Path) -> dict[str, Any]:
    """Check a converted checkpoint directory; return its marker or raise ``ModelUnavailableError``."""
    missing = [name for name in REQUIRED_FILES if not (path / name).is_file()]
    if missing:
        raise ModelUnavailableError(
            f"model cache {path} is incomplete (missing {', '.join(missing)}); "
            "delete it (mcp-gemma model remove) and it is rebuilt on the next load"
        )
    try:
        marker: dict[str, Any] = json.loads((path / MARKER).read_text(encoding="utf-8"))
        from safetensors import safe_open

        with safe_open(str(path / WEIGHTS), framework="np") as handle:
            n_tensors = len(list(handle.keys()))
    except Exception as exc:
        raise ModelUnavailableError(
            f"model cache {path} is corrupt ({type(exc).__name__}: {exc}); "
            "delete it (mcp-gemma model remove) and it is rebuilt on the next load"
        ) from exc
    if marker.get("format") != CACHE_FORMAT or marker.get("tensors") != n_tensors:
        raise ModelUnavailableError(
            f"model cache {path} does not match this version of mcp-gemma; delete it and it is rebuilt"
        )
    return marker


def convert_gguf(gguf_path: Path, target: Path, *, progress: Progress | None = None) -> Path:
    """Dequantise a Gemma 3 GGUF file into ``target`` (config, tokenizer, fp32 safetensors).

    Numpy, ``safetensors`` and ``tokenizers`` only: no torch, no transformers. Tensors are written
    one (row slice) at a time, so memory stays near the largest slice whatever the model's size.
    Builds in a sibling temporary directory and renames it into place; if another process
    finished first, its result is kept.
    """
    from mcp_gemma.llm.fast_tokenizer import write_fast_tokenizer
    from mcp_gemma.llm.gguf_tokenizer import ARRAYS, build_gemma_tokenizer

    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    say("reading GGUF metadata")
    metadata, tensor_table = read_gguf_tables(gguf_path, arrays=(*ARRAYS, PATTERN_KEY))
    check_convertible(gguf_path, metadata, tensor_table)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        say(f"dequantising {len(tensor_table)} tensors")
        write_dense(gguf_path, tensor_table, tmp / WEIGHTS, progress=say)
        say("building config and tokenizer")
        vocab = next(e.shape[0] for e in tensor_table if e.name == "token_embd.weight")
        config = gemma3_config(metadata, vocab_size=vocab)
        (tmp / "config.json").write_text(
            json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8"
        )
        built = build_gemma_tokenizer(metadata)
        built.tokenizer.save(str(tmp / "tokenizer.json"))
        # The same tokenizer as a compact binary file: a cached load reads it in milliseconds.
        write_fast_tokenizer(tmp, json.loads(built.tokenizer.to_str()))
        (tmp / "tokenizer_config.json").write_text(json.dumps(built.config, indent=2), encoding="utf-8")
        if built.chat_template is not None:
            (tmp / "chat_template.jinja").write_text(built.chat_template, encoding="utf-8")
        marker = {
            "format": CACHE_FORMAT,
            "source": str(gguf_path),
            "source_bytes": gguf_path.stat().st_size,
            "tensors": len(tensor_table),
            "quantization": quant_types(tensor_table),
            "built_s": round(time.perf_counter() - started, 2),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=2), encoding="utf-8")
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.exists():
                raise
            logger.info("another process built %s first; keeping it", target)
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.info("converted %s into %s in %.1f s", gguf_path.name, target, time.perf_counter() - started)
    return target


def quant_types(entries: list[TensorEntry]) -> dict[str, int]:
    """How many tensors of each GGML type a file holds, e.g. ``{"F32": 109, "Q4_K": 27}``."""
    from gguf import GGMLQuantizationType

    counts: dict[str, int] = {}
    for entry in entries:
        name = GGMLQuantizationType(entry.ggml_type).name
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


def check_convertible(path: Path, metadata: dict[str, Any], entries: list[TensorEntry]) -> None:
    """Refuse, before any work, a file that is not Gemma 3 or holds a tensor we cannot read."""
    import numpy as np
    from gguf import GGMLQuantizationType
    from gguf import dequantize as numpy_dequantize

    if metadata.get("general.architecture") != "gemma3":
        found = metadata.get("general.architecture", "unknown")
        raise ModelUnavailableError(f"{path} holds a {found!r} model; only Gemma 3 GGUF files convert")
    blob = np.memmap(path, dtype=np.uint8, mode="r")
    tried: set[int] = set()
    for entry in entries:
        try:
            hf_tensor_name(entry.name)
        except ValueError as exc:
            raise ModelUnavailableError(f"{path}: {exc}") from None
        if entry.ggml_type in tried:
            continue
        tried.add(entry.ggml_type)
        qtype = GGMLQuantizationType(entry.ggml_type)
        row = entry.nbytes // max(1, entry.shape[0]) if len(entry.shape) > 1 else entry.nbytes
        try:  # one row of each type: the gguf package dequantises most types, not every one
            numpy_dequantize(np.asarray(blob[entry.start : entry.start + row]), qtype)
        except NotImplementedError:
            raise ModelUnavailableError(
                f"{path}: tensor {entry.name} is stored as {qtype.name}, which the gguf package cannot "
                "dequantise; use a file quantised as Q4_K, Q5_K, Q6_K, Q8_0, F16 or similar"
            ) from None
    if not any(e.name == "token_embd.weight" for e in entries):
        raise ModelUnavailableError(f"{path} has no token_embd.weight tensor")


@dataclass(frozen=True)
class TensorEntry:
    """Where one tensor's bytes are in a GGUF file."""

    name: str
    shape: tuple[int, ...]  # torch order (rows, cols)
    ggml_type: int
    start: int  # absolute file offset
    nbytes: int


_SCALARS = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9


def read_gguf_tables(path: Path, *, arrays: tuple[str, ...] = ()) -> tuple[dict[str, Any], list[TensorEntry]]:
    """Scalar metadata and the tensor table of a GGUF v2/v3 file; of the arrays, only ``arrays``
    are read (as lists).

    ``gguf.GGUFReader`` builds a numpy view per vocabulary string (half a minute for
    Gemma's 262k tokens); this walks the header with ``struct`` and keeps what we need.
    """
    import mmap

    from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as blob:
        magic, version, n_tensors, n_kv = struct.unpack_from("<IIQQ", blob, 0)
        if magic != 0x46554747 or version not in (2, 3):
            raise ModelUnavailableError(f"{path} is not a GGUF v2/v3 file")
        pos = 24

        def string(at: int) -> tuple[str, int]:
            (length,) = struct.unpack_from("<Q", blob, at)
            return blob[at + 8 : at + 8 + length].decode("utf-8", "replace"), at + 8 + length

        def value(at: int, vtype: int, keep: bool) -> tuple[Any, int]:
            if vtype in _SCALARS:
                fmt = _SCALARS[vtype]
                return struct.unpack_from(fmt, blob, at)[0], at + struct.calcsize(fmt)
            if vtype == _STRING:
                return string(at)
            if vtype == _ARRAY:
                item_type, count = struct.unpack_from("<IQ", blob, at)
                at += 12
                if item_type in _SCALARS:
                    size = struct.calcsize(_SCALARS[item_type])
                    if not keep:
                        return None, at + count * size
                    items = list(struct.unpack_from(f"<{count}{_SCALARS[item_type][1]}", blob, at))
                    return items, at + count * size
                kept = []
                for _ in range(count):
                    item, at = value(at, item_type, keep)
                    if keep:
                        kept.append(item)
                return (kept if keep else None), at
            raise ModelUnavailableError(f"{path}: unknown GGUF value type {vtype}")

        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key, pos = string(pos)
            (vtype,) = struct.unpack_from("<I", blob, pos)
            item, pos = value(pos + 4, vtype, key in arrays)
            if item is not None:
                metadata[key] = item
        raw_entries = []
        for _ in range(n_tensors):
            name, pos = string(pos)
            (n_dims,) = struct.unpack_from("<I", blob, pos)
            dims = struct.unpack_from(f"<{n_dims}Q", blob, pos + 4)
            ggml_type, offset = struct.unpack_from("<IQ", blob, pos + 4 + 8 * n_dims)
            pos += 4 + 8 * n_dims + 12
            raw_entries.append((name, tuple(reversed(dims)), ggml_type, offset))
        alignment = int(metadata.get("general.alignment", 32))
        data_start = (pos + alignment - 1) // alignment * alignment
        size = len(blob)
    entries = []
    for name, shape, ggml_type, offset in raw_entries:
        try:
            block_elems, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        except (ValueError, KeyError):
            raise ModelUnavailableError(
                f"{path}: tensor {name} has GGML type {ggml_type}, which this version of the gguf package "
                "does not know; use a file quantised as Q4_K, Q5_K, Q6_K, Q8_0, F16 or similar"
            ) from None
        n_elems = 1
        for dim in shape:
            n_elems *= dim
        nbytes = n_elems // block_elems * block_bytes
        if data_start + offset + nbytes > size:
            raise ModelUnavailableError(f"{path} is truncated (tensor {name} runs past the end)")
        entries.append(TensorEntry(name, shape, ggml_type, data_start + offset, nbytes))
    return metadata, entries


PATTERN_KEY = "gemma3.attention.sliding_window_pattern"  # an array in newer files: read it
_SLICE_BYTES = 64 << 20  # dequantised f32 bytes per write: bounds conversion memory for any model


def dequantize_rows(blob: Any, entry: TensorEntry, first: int, last: int) -> Any:
    """Rows ``first:last`` of a 2-D tensor (or the whole of a 1-D one) as float32 numpy, with
    Gemma's norms stored as ``w`` (llama.cpp writes them as ``1 + w``)."""
    import numpy as np
    from gguf import GGMLQuantizationType
    from gguf import dequantize as numpy_dequantize

    row_bytes = entry.nbytes // entry.shape[0] if len(entry.shape) > 1 else entry.nbytes
    raw = np.asarray(blob[entry.start + first * row_bytes : entry.start + last * row_bytes])
    if entry.ggml_type == 0:
        weights = raw.view(np.float32).astype(np.float32)
    elif entry.ggml_type == 1:
        weights = raw.view(np.float16).astype(np.float32)
    else:
        weights = np.asarray(
            numpy_dequantize(raw.reshape(last - first, row_bytes), GGMLQuantizationType(entry.ggml_type)),
            dtype=np.float32,
        )
    shape = (last - first, *entry.shape[1:]) if len(entry.shape) > 1 else entry.shape
    weights = weights.reshape(shape)
    if hf_tensor_name(entry.name).endswith("norm.weight"):
        weights -= np.float32(1.0)
    return weights


def write_dense(
    path: Path, entries: list[TensorEntry], out: Path, *, progress: Progress | None = None
) -> None:
    """A float32 safetensors file of every tensor under its transformers name, written as it is
    dequantised (slices of at most ``_SLICE_BYTES``), never whole in memory.

    ``progress`` hears ``dequantising: done/total MiB`` (:func:`counted`) at the start and then at
    most :data:`PROGRESS_STEPS` times as the output grows, the last one at ``total/total``."""
    from mcp_gemma.llm.tensor_file import write_tensors

    ordered = sorted(entries, key=lambda e: hf_tensor_name(e.name))
    specs = [(hf_tensor_name(e.name), "F32", e.shape) for e in ordered]
    total = sum(4 * math.prod(e.shape) for e in ordered)
    total_mib = max(1, math.ceil(total / 2**20))
    with path.open("rb") as handle:  # plain reads: a mapping would keep every page it touched resident
        blob = _FileBytes(handle)

        def chunks() -> Iterator[Any]:
            written, reported = 0, 0
            if progress is not None:
                progress(counted("dequantising", 0, total_mib, "MiB"))
            for entry in ordered:
                rows = entry.shape[0] if len(entry.shape) > 1 else 1
                row_bytes = 4 * math.prod(entry.shape) // rows
                step = max(1, _SLICE_BYTES // row_bytes)
                for first in range(0, rows, step):
                    last = min(rows, first + step) if len(entry.shape) > 1 else 1
                    yield dequantize_rows(blob, entry, first, last)
                    written += (last - first) * row_bytes
                    reached = written * PROGRESS_STEPS // total if total else PROGRESS_STEPS
                    if progress is not None and reached > reported:
                        reported = reached
                        done = total_mib if reached >= PROGRESS_STEPS else written * total_mib // total
                        progress(counted("dequantising", done, total_mib, "MiB"))

        write_tensors(out, specs, chunks(), {"format": "pt", "source": path.name})


class _FileBytes:
    """``blob[a:b]``: bytes ``a`` to ``b`` of an open file as a read-only uint8 array."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle

    def __getitem__(self, where: slice) -> Any:
        import numpy as np

        self._handle.seek(where.start)
        return np.frombuffer(self._handle.read(where.stop - where.start), dtype=np.uint8)


def gemma3_config(metadata: dict[str, Any], *, vocab_size: int) -> dict[str, Any]:
    """The ``config.json`` of a Gemma 3 text model from GGUF metadata (what transformers writes
    for ``Gemma3TextConfig``, with the constants llama.cpp assumes for Gemma 3)."""

    def meta(key: str, default: Any = None) -> Any:
        return metadata.get(f"gemma3.{key}", default)

    layers = int(meta("block_count"))
    hidden = int(meta("embedding_length"))
    heads = int(meta("attention.head_count"))
    head_dim = int(meta("attention.key_length", hidden // heads))
    full: dict[str, Any] = {"rope_theta": float(meta("rope.freq_base", 1_000_000.0)), "rope_type": "default"}
    if meta("rope.scaling.type") == "linear" and float(meta("rope.scaling.factor", 1.0)) != 1.0:
        full.update(rope_type="linear", factor=float(meta("rope.scaling.factor")))
    # One global layer in six (llama.cpp's constant for Gemma 3) unless the file says: newer
    # converters write the pattern, as a period or as one "sliding" flag per layer.
    pattern = meta("attention.sliding_window_pattern", 6)
    if isinstance(pattern, list) and len(pattern) == layers:
        layer_types = ["sliding_attention" if sliding else "full_attention" for sliding in pattern]
        pattern = next((i + 1 for i, sliding in enumerate(pattern) if not sliding), layers)
    else:
        pattern = int(pattern) if isinstance(pattern, int) and pattern > 0 else 6
        layer_types = [
            "full_attention" if (i + 1) % pattern == 0 else "sliding_attention" for i in range(layers)
        ]

    def token_id(key: str, default: int) -> int:
        return int(metadata.get(f"tokenizer.ggml.{key}", default))

    return {
        "_sliding_window_pattern": pattern,
        "architectures": ["Gemma3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "attn_logit_softcapping": None,
        "bos_token_id": token_id("bos_token_id", 2),
        "eos_token_id": token_id("eos_token_id", 1),
        "final_logit_softcapping": None,
        "head_dim": head_dim,
        "hidden_activation": "gelu_pytorch_tanh",
        "hidden_size": hidden,
        "initializer_range": 0.02,
        "intermediate_size": int(meta("feed_forward_length")),
        "layer_types": layer_types,
        "max_position_embeddings": int(meta("context_length", 32768)),
        "model_type": "gemma3_text",
        "num_attention_heads": heads,
        "num_hidden_layers": layers,
        "num_key_value_heads": int(meta("attention.head_count_kv", heads)),
        "pad_token_id": token_id("padding_token_id", 0),
        # llama.cpp scales queries by hidden / heads for the 62-layer 27B, by head_dim otherwise.
        "query_pre_attn_scalar": hidden // heads if layers == 62 else head_dim,
        "rms_norm_eps": float(meta("attention.layer_norm_rms_epsilon", 1e-6)),
        "rope_parameters": {
            "full_attention": full,
            "sliding_attention": {
                "rope_theta": float(meta("rope.freq_base_swa", 10_000.0)),
                "rope_type": "default",
            },
        },
        "sliding_window": int(meta("attention.sliding_window", 512)),
        "tie_word_embeddings": True,
        "use_bidirectional_attention": False,
        "use_cache": True,
        "vocab_size": vocab_size,
    }
