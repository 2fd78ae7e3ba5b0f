"""Gemma's tokenizer from a compact binary file, encoded and decoded by the Rust core.

``tokenizers.Tokenizer.from_file`` spends most of a cached model load parsing the 33 MB
``tokenizer.json`` (262k tokens, ~515k merges). The conversion also writes ``tokenizer.bin``: the
same vocabulary, merges and added tokens as ids, read in a small fraction of the time by
:class:`mcp_gemma.native.BpeTokenizer`, which gives the same ids and text as ``tokenizers`` for
exactly the pipeline :mod:`mcp_gemma.llm.gguf_tokenizer` builds (``tests/llm`` compares them on a
large corpus). A ``tokenizer.json`` of any other shape gets no binary file and stays on
``tokenizers``; an unreadable binary file is rebuilt from the JSON.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from mcp_gemma.errors import McpGemmaError
from mcp_gemma.native import BpeTokenizer

logger = logging.getLogger(__name__)

FAST_TOKENIZER = "tokenizer.bin"

# The only pipeline the Rust tokenizer implements: what gguf_tokenizer.build_gemma_tokenizer writes.
_NORMALIZER = {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}
_PRE_TOKENIZER = {
    "type": "Split",
    "pattern": {"String": " "},
    "behavior": "MergedWithPrevious",
    "invert": False,
}
_DECODER = {
    "type": "Sequence",
    "decoders": [
        {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
        {"type": "ByteFallback"},
        {"type": "Fuse"},
    ],
}
_MODEL = {
    "type": "BPE",
    "dropout": None,
    "continuing_subword_prefix": None,
    "end_of_word_suffix": None,
    "fuse_unk": True,
    "byte_fallback": True,
    "ignore_merges": False,
}


def _bos_of(post: Any) -> str | bool | None:
    """The BOS token of a ``TemplateProcessing`` that adds only it (None for no post-processor);
    False for any other post-processor."""
    if post is None:
        return None
    if not isinstance(post, dict) or post.get("type") != "TemplateProcessing":
        return False
    single = post.get("single")
    if single == [{"Sequence": {"id": "A", "type_id": 0}}]:
        return None
    if (
        isinstance(single, list)
        and len(single) == 2
        and single[1] == {"Sequence": {"id": "A", "type_id": 0}}
        and isinstance(single[0], dict)
        and isinstance(single[0].get("SpecialToken"), dict)
    ):
        bos = single[0]["SpecialToken"].get("id")
        specials = post.get("special_tokens") or {}
        entry = specials.get(bos) if isinstance(bos, str) else None
        if isinstance(entry, dict) and entry.get("tokens") == [bos]:
            return str(bos)
    return False


def fast_parts(data: dict[str, Any]) -> dict[str, Any] | None:
    """``BpeTokenizer.build``'s arguments from a parsed ``tokenizer.json``, or None when its pipeline
    is not exactly the one the Rust tokenizer implements."""
    model = data.get("model")
    if not isinstance(model, dict) or any(model.get(k) != v for k, v in _MODEL.items()):
        return None
    if (
        data.get("normalizer") != _NORMALIZER
        or data.get("pre_tokenizer") not in (_PRE_TOKENIZER, None)
        or data.get("decoder") != _DECODER
        or data.get("truncation") is not None
        or data.get("padding") is not None
    ):
        return None
    bos = _bos_of(data.get("post_processor"))
    if bos is False:
        return None
    added = data.get("added_tokens") or []
    plain = {"single_word": False, "lstrip": False, "rstrip": False, "normalized": False}
    if any(any(token.get(k) != v for k, v in plain.items()) for token in added):
        return None
    unk = model.get("unk_token")
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ", 1)) for m in model["merges"]]
    return {
        "vocab": list(model["vocab"].items()),
        "merges": merges,
        "added": [(int(t["id"]), str(t["content"]), bool(t["special"])) for t in added],
        "unk_token": unk if isinstance(unk, str) else None,
        "bos_token": bos,
    }


def write_fast_tokenizer(checkpoint: Path, data: dict[str, Any] | None = None) -> bool:
    """Write ``tokenizer.bin`` beside ``tokenizer.json`` (parsed here unless ``data`` is given);
    False, writing nothing, when that tokenizer is not one the Rust core reproduces."""
    if data is None:
        data = json.loads((checkpoint / "tokenizer.json").read_text(encoding="utf-8"))
    parts = fast_parts(data)
    if parts is None:
        return False
    BpeTokenizer.build(**parts).save(checkpoint / FAST_TOKENIZER)
    return True


def load_fast_tokenizer(checkpoint: Path) -> BpeTokenizer | None:
    """The checkpoint's ``tokenizer.bin`` if it is there, readable and not older than
    ``tokenizer.json``; None otherwise (the caller loads the JSON, and may rebuild the file)."""
    path = checkpoint / FAST_TOKENIZER
    try:
        stale = path.stat().st_mtime < (checkpoint / "tokenizer.json").stat().st_mtime
    except OSError:
        return None
    if stale:
        logger.info("%s is older than tokenizer.json; rebuilding it", path)
        return None
    try:
        return BpeTokenizer.load(path)
    except McpGemmaError as exc:
        logger.warning("%s is unreadable (%s); loading tokenizer.json instead and rebuilding it", path, exc)
        return None
