"""Turn a Gemma GGUF file into an ordinary dense checkpoint directory, once.

transformers can read GGUF but takes about a minute per load and refuses ``save_pretrained``
on the result, so the first load dequantises the tensors with the ``gguf`` reader, writes them
as safetensors next to the config and tokenizer, and every later load reads that directory in
seconds. The directory is built under a temporary name and renamed into place, so a crash
never leaves a half-written cache; a marker file written last records what it was built from.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import struct
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mcp_gemma.errors import ModelUnavailableError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

MARKER = "mcp_gemma_cache.json"
WEIGHTS = "model.safetensors"
Q8_WEIGHTS = "model.q8_0.safetensors"  # built from WEIGHTS by q8.py
CACHE_FORMAT = 1
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

    Builds in a sibling temporary directory and renames it into place; if another process
    finished first, its result is kept.
    """
    from safetensors.torch import save_file

    say = progress or (lambda _msg: None)
    started = time.perf_counter()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        say("reading GGUF metadata")
        metadata, tensor_table = read_gguf_tables(gguf_path)
        if metadata.get("general.architecture") != "gemma3":
            found = metadata.get("general.architecture", "unknown")
            raise ModelUnavailableError(
                f"{gguf_path} holds a {found!r} model; only Gemma 3 GGUF files convert"
            )
        say(f"dequantising {len(tensor_table)} tensors")
        tensors = dequantize_tensors(gguf_path, tensor_table)
        save_file(tensors, str(tmp / WEIGHTS), metadata={"format": "pt", "source": gguf_path.name})
        del tensors
        say("building config and tokenizer")
        vocab = next(e.shape[0] for e in tensor_table if e.name == "token_embd.weight")
        gemma3_config(metadata, vocab_size=vocab).save_pretrained(str(tmp))
        gguf_tokenizer(gguf_path).save_pretrained(str(tmp))
        from safetensors import safe_open

        with safe_open(str(tmp / WEIGHTS), framework="pt") as handle:
            n_tensors = len(list(handle.keys()))
        marker = {
            "format": CACHE_FORMAT,
            "source": str(gguf_path),
            "source_bytes": gguf_path.stat().st_size,
            "tensors": n_tensors,
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


def read_gguf_tables(path: Path) -> tuple[dict[str, Any], list[TensorEntry]]:
    """Scalar metadata (arrays skipped) and the tensor table of a GGUF v2/v3 file.

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

        def value(at: int, vtype: int) -> tuple[Any, int]:
            if vtype in _SCALARS:
                fmt = _SCALARS[vtype]
                return struct.unpack_from(fmt, blob, at)[0], at + struct.calcsize(fmt)
            if vtype == _STRING:
                return string(at)
            if vtype == _ARRAY:
                item_type, count = struct.unpack_from("<IQ", blob, at)
                at += 12
                if item_type in _SCALARS:
                    return None, at + count * struct.calcsize(_SCALARS[item_type])
                for _ in range(count):
                    _, at = value(at, item_type)
                return None, at
            raise ModelUnavailableError(f"{path}: unknown GGUF value type {vtype}")

        metadata: dict[str, Any] = {}
        for _ in range(n_kv):
            key, pos = string(pos)
            (vtype,) = struct.unpack_from("<I", blob, pos)
            item, pos = value(pos + 4, vtype)
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
        block_elems, block_bytes = GGML_QUANT_SIZES[GGMLQuantizationType(ggml_type)]
        n_elems = 1
        for dim in shape:
            n_elems *= dim
        nbytes = n_elems // block_elems * block_bytes
        if data_start + offset + nbytes > size:
            raise ModelUnavailableError(f"{path} is truncated (tensor {name} runs past the end)")
        entries.append(TensorEntry(name, shape, ggml_type, data_start + offset, nbytes))
    return metadata, entries


def dequantize_tensors(path: Path, entries: list[TensorEntry]) -> dict[str, torch.Tensor]:
    """Dense float32 tensors under transformers names (Gemma's ``1 + w`` norms undone)."""
    import numpy as np
    import torch
    from gguf import GGMLQuantizationType
    from gguf import dequantize as numpy_dequantize

    torch_kernels: dict[int, Any] = {}
    torch_dequantize: Any = None
    try:  # transformers' torch kernels are ~5x faster than gguf's numpy ones where they exist
        from transformers.integrations.gguf import dequant

        torch_kernels, torch_dequantize = dict(dequant.GGML_BLOCK), dequant.dequantize
    except ImportError:  # pragma: no cover - older transformers
        pass

    blob = np.memmap(path, dtype=np.uint8, mode="r")
    tensors: dict[str, torch.Tensor] = {}
    for entry in entries:
        raw = blob[entry.start : entry.start + entry.nbytes]
        qtype = GGMLQuantizationType(entry.ggml_type)
        if qtype == GGMLQuantizationType.F32:
            weights = torch.from_numpy(raw.view(np.float32).copy())
        elif qtype == GGMLQuantizationType.F16:
            weights = torch.from_numpy(raw.view(np.float16).astype(np.float32))
        elif torch_dequantize is not None and entry.ggml_type in torch_kernels:
            weights = torch_dequantize(torch.from_numpy(raw.copy()), entry.ggml_type)
        else:
            flat = raw.reshape(-1, entry.nbytes // max(1, entry.shape[0])) if len(entry.shape) > 1 else raw
            weights = torch.from_numpy(np.asarray(numpy_dequantize(flat, qtype), dtype=np.float32))
        weights = weights.reshape(entry.shape).contiguous()
        name = hf_tensor_name(entry.name)
        if name.endswith("norm.weight"):
            # llama.cpp stores Gemma's RMSNorm scale as (1 + w); transformers keeps w.
            weights = weights - 1.0
        tensors[name] = weights
    return tensors


def gemma3_config(metadata: dict[str, Any], *, vocab_size: int) -> Any:
    """A ``Gemma3TextConfig`` from GGUF metadata (what transformers' GGUF path builds)."""
    from transformers import AutoConfig
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    mapping: dict[str, dict[str, str | None]] = dict(GGUF_CONFIG_MAPPING)  # type: ignore[arg-type]
    kwargs: dict[str, Any] = {}
    for prefix in ("general", "gemma3"):
        for key, renamed in mapping.get(prefix, {}).items():
            if renamed and f"{prefix}.{key}" in metadata:
                kwargs[renamed] = metadata[f"{prefix}.{key}"]
    kwargs.pop("model_type", None)
    kwargs.pop("_model_name_or_path", None)
    kwargs["vocab_size"] = vocab_size
    return AutoConfig.for_model("gemma3_text", **kwargs)


def gguf_tokenizer(path: Path) -> Any:
    """The fast tokenizer a GGUF file describes, built once (about 15 s for Gemma's vocabulary)."""
    from transformers import GemmaTokenizer
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        convert_gguf_tokenizer,
        get_gguf_tokenizer,
    )

    architecture, tokenizer_dict, tokenizer_config = get_gguf_tokenizer(str(path))
    backend, extra = convert_gguf_tokenizer(architecture, tokenizer_dict)
    return GemmaTokenizer(tokenizer_object=backend, **tokenizer_config, **extra)
