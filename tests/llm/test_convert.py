"""GGUF header parsing, tensor naming and cache validation (no model is loaded)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mcp_gemma.errors import AccessDeniedError, InvalidInputError, ModelUnavailableError
from mcp_gemma.llm.convert import hf_tensor_name, read_gguf_tables, validate_checkpoint
from mcp_gemma.llm.models import PACKAGED_MODEL, ModelStore, hub_dir_name, inside


def test_tensor_names_map_to_transformers() -> None:
    assert hf_tensor_name("token_embd.weight") == "model.embed_tokens.weight"
    assert hf_tensor_name("output_norm.weight") == "model.norm.weight"
    assert hf_tensor_name("blk.17.ffn_down.weight") == "model.layers.17.mlp.down_proj.weight"
    assert hf_tensor_name("blk.0.attn_k_norm.weight") == "model.layers.0.self_attn.k_norm.weight"
    with pytest.raises(ValueError, match="unexpected tensor"):
        hf_tensor_name("blk.0.mystery.weight")


def test_packaged_gguf_header_reads_fast(packaged_gguf: Path) -> None:
    gguf = packaged_gguf
    metadata, tensors = read_gguf_tables(gguf)
    assert metadata["general.architecture"] == "gemma3"
    assert metadata["gemma3.block_count"] == 18
    assert len(tensors) == 236
    embed = next(t for t in tensors if t.name == "token_embd.weight")
    assert embed.shape == (262144, 640)
    assert all(t.start + t.nbytes <= gguf.stat().st_size for t in tensors)


def test_truncated_gguf_is_refused(tmp_path: Path, packaged_gguf: Path) -> None:
    gguf = packaged_gguf
    cut = tmp_path / "cut.gguf"
    cut.write_bytes(gguf.read_bytes()[:50_000_000])
    with pytest.raises(ModelUnavailableError, match="truncated"):
        read_gguf_tables(cut)
    not_gguf = tmp_path / "junk.gguf"
    not_gguf.write_bytes(b"definitely not a gguf file" * 10)
    with pytest.raises(ModelUnavailableError, match="not a GGUF"):
        read_gguf_tables(not_gguf)


def test_resolve_rejects_unknown_and_undownloaded_models(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    assert store.resolve(PACKAGED_MODEL).kind == "packaged"
    with pytest.raises(ModelUnavailableError, match="unknown model"):
        store.resolve("no such model!")
    with pytest.raises(ModelUnavailableError, match="model download google/gemma-3-1b-it"):
        store.resolve("google/gemma-3-1b-it")
    with pytest.raises(InvalidInputError, match="empty"):
        store.resolve("  ")


def test_corrupt_model_directory_gives_a_clear_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text("{not json", encoding="utf-8")
    (broken / "model.safetensors").write_bytes(b"\x00" * 64)
    store = ModelStore(tmp_path / "models")
    resolved = store.resolve(str(broken))
    with pytest.raises(ModelUnavailableError, match="corrupt"):
        store.ensure_checkpoint(resolved)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelUnavailableError, match="is not a model"):
        store.resolve(str(empty))


def test_cache_validation_spots_partial_and_corrupt_caches(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    with pytest.raises(ModelUnavailableError, match="incomplete"):
        validate_checkpoint(cache)
    for name in ("config.json", "tokenizer.json"):
        (cache / name).write_text("{}", encoding="utf-8")
    (cache / "model.safetensors").write_bytes(b"garbage")
    (cache / "mcp_gemma_cache.json").write_text(json.dumps({"format": 1, "tensors": 1}), encoding="utf-8")
    with pytest.raises(ModelUnavailableError, match="corrupt"):
        validate_checkpoint(cache)


def test_hub_names_cannot_escape_the_models_dir(tmp_path: Path) -> None:
    assert hub_dir_name("google/gemma-2b-it") == "google--gemma-2b-it"
    for bad in ("../etc", "a/../../b", "/abs/path", "google/gemma/extra", "a/.."):
        with pytest.raises(InvalidInputError):
            hub_dir_name(bad)
    with pytest.raises(AccessDeniedError):
        inside(tmp_path / "models", tmp_path / "models" / ".." / "elsewhere")
