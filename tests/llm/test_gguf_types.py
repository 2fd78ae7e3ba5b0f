"""Every GGUF type llama.cpp writes for Gemma 3 converts to the right weights, the int8 path handles
what it converts, and the prompt style follows the checkpoint: tiny synthetic Gemma 3 files
written with the ``gguf`` package (``synthetic_gguf.py``), converted with the project's path."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import numpy as np
import pytest
from gguf import GGMLQuantizationType, GGUFWriter
from safetensors import safe_open
from typer.testing import CliRunner

from mcp_gemma.cli import app
from mcp_gemma.errors import ModelUnavailableError
from mcp_gemma.llm.config import GemmaSettings
from mcp_gemma.llm.convert import MARKER, WEIGHTS, convert_gguf
from mcp_gemma.llm.gemma import GemmaModel
from mcp_gemma.llm.models import ModelStore
from mcp_gemma.llm.q8 import Q8Decoder, load_q8_weights, read_config
from mcp_gemma.llm.reason import SYSTEM_PROMPT, answer_question
from mcp_gemma.llm.service import LLMService
from tests.llm.synthetic_gguf import GEMMA3_CHAT_TEMPLATE, Q, Shape, write_gemma3_gguf

runner = CliRunner()
TYPES = [Q.Q4_K, Q.Q5_K, Q.Q6_K, Q.Q8_0, Q.F16]
CHAT_EXAMPLE = (
    f"<bos><start_of_turn>user\n{SYSTEM_PROMPT}\n\nQuestion: What is the capital of France?"
    "<end_of_turn>\n<start_of_turn>model\n"
)


@pytest.fixture(autouse=True)
def models_under_data_dir(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI tests pass --data-dir and expect models under <data-dir>/models."""
    monkeypatch.delenv("MCP_GEMMA_GEMMA__CACHE_DIR", raising=False)


def _dense(checkpoint: Path) -> dict[str, np.ndarray]:
    with safe_open(str(checkpoint / WEIGHTS), framework="np") as handle:
        return {name: handle.get_tensor(name) for name in handle.keys()}  # noqa: SIM118


def _q8_values(matrix: object) -> np.ndarray:
    codes, scales = matrix.codes(), matrix.scales()  # type: ignore[attr-defined]
    return np.asarray(codes, dtype=np.float32) * np.repeat(scales, 32, axis=1)


def _q8_bound(dense: np.ndarray) -> np.ndarray:
    """Half a Q8_0 step per block of 32 (plus float slack): the most int8 may move a weight."""
    amax = np.abs(dense).reshape(dense.shape[0], -1, 32).max(axis=-1, keepdims=True)
    return np.broadcast_to(amax / 127 * 0.501 + 1e-7, (*amax.shape[:2], 32)).reshape(dense.shape)


@pytest.mark.parametrize("qtype", TYPES, ids=lambda q: q.name)
def test_each_type_converts_to_its_values_and_to_int8(tmp_path: Path, qtype: GGMLQuantizationType) -> None:
    synthetic = write_gemma3_gguf(tmp_path / f"tiny-{qtype.name}.gguf", qtype)
    checkpoint = convert_gguf(synthetic.path, tmp_path / "converted")
    dense = _dense(checkpoint)
    assert set(dense) == set(synthetic.expected)
    for name, want in synthetic.expected.items():
        got = dense[name]
        assert got.dtype == np.float32 and got.shape == want.shape, name
        excess = np.abs(got - want) - synthetic.tolerance[name]
        assert excess.max() <= 0, f"{name}: off by {excess.max()} beyond the {qtype.name} bound"
    marker = json.loads((checkpoint / MARKER).read_text())
    assert marker["quantization"] == {"F32": 13, qtype.name: 15}
    config = json.loads((checkpoint / "config.json").read_text())
    assert (config["model_type"], config["hidden_size"], config["head_dim"], config["vocab_size"]) == (
        "gemma3_text",
        256,
        128,
        512,
    )
    assert config["layer_types"] == ["sliding_attention", "sliding_attention"]
    assert config["rope_parameters"]["full_attention"] == {"rope_theta": 1_000_000.0, "rope_type": "default"}

    # the int8 path: every product matrix within half a Q8_0 step of the converted weights
    weights = load_q8_weights(
        checkpoint, read_config(checkpoint), cache=tmp_path / "q8.safetensors", say=print
    )
    layer = weights.layers[1]
    p = "model.layers.1."
    pairs = {
        "embed": (weights.embed, dense["model.embed_tokens.weight"]),
        "qkv": (layer.qkv, np.concatenate([dense[f"{p}self_attn.{x}_proj.weight"] for x in "qkv"])),
        "o": (layer.o, dense[f"{p}self_attn.o_proj.weight"]),
        "gate_up": (
            layer.gate_up,
            np.concatenate([dense[f"{p}mlp.{x}_proj.weight"] for x in ("gate", "up")]),
        ),
        "down": (layer.down, dense[f"{p}mlp.down_proj.weight"]),
    }
    for name, (matrix, source) in pairs.items():
        assert np.all(np.abs(_q8_values(matrix) - source) <= _q8_bound(source)), name
    np.testing.assert_allclose(layer.norms[0], 1.0 + dense[f"{p}input_layernorm.weight"], rtol=0, atol=1e-6)
    logits = Q8Decoder(weights, 16).forward(np.array([2, 300, 301, 302], dtype=np.int64))
    assert logits.shape == (512,) and np.isfinite(logits).all()


def test_tokenizer_matches_the_one_transformers_builds(tmp_path: Path) -> None:
    from transformers import GemmaTokenizer
    from transformers.integrations.gguf.gguf_tokenizer_mapping import (
        convert_gguf_tokenizer,
        get_gguf_tokenizer,
    )

    synthetic = write_gemma3_gguf(tmp_path / "tiny.gguf", Q.Q8_0, chat_template=GEMMA3_CHAT_TEMPLATE)
    checkpoint = convert_gguf(synthetic.path, tmp_path / "converted")
    architecture, tokenizer_dict, tokenizer_config = get_gguf_tokenizer(str(synthetic.path))
    backend, extra = convert_gguf_tokenizer(architecture, tokenizer_dict)
    theirs = GemmaTokenizer(tokenizer_object=backend, **tokenizer_config, **extra)
    theirs.save_pretrained(str(tmp_path / "theirs"))
    ours_json = json.loads((checkpoint / "tokenizer.json").read_text(encoding="utf-8"))
    theirs_json = json.loads((tmp_path / "theirs" / "tokenizer.json").read_text(encoding="utf-8"))
    assert ours_json == theirs_json
    theirs_config = json.loads((tmp_path / "theirs" / "tokenizer_config.json").read_text(encoding="utf-8"))
    ours_config = json.loads((checkpoint / "tokenizer_config.json").read_text(encoding="utf-8"))
    assert ours_config == theirs_config
    assert (checkpoint / "chat_template.jinja").read_text(encoding="utf-8") == (
        tmp_path / "theirs" / "chat_template.jinja"
    ).read_text(encoding="utf-8")


def _info(data_dir: Path, model: Path) -> dict[str, object]:
    shown = runner.invoke(app, ["model", "info", "--json", "-m", str(model), "--data-dir", str(data_dir)])
    assert shown.exit_code == 0, shown.output
    report: dict[str, object] = json.loads(shown.stdout)
    return report


async def _answer(model: Path, models: Path) -> tuple[str, str, list[int]]:
    service = LLMService(GemmaSettings(model=str(model), cache_dir=models), models.parent)
    try:
        result = await answer_question(service, "What is the capital of France?", None, [], max_new_tokens=3)
        loaded = await service.ensure_loaded()
        assert isinstance(loaded, GemmaModel)
        ids = loaded.render("What is the capital of France?")
        return result.prompt_style, loaded.info.dtype, ids
    finally:
        await service.unload()


def test_prompt_style_follows_the_checkpoint(tmp_path: Path) -> None:
    """An instruction-tuned GGUF (chat template in its metadata) is prompted through Gemma's turns;
    a base one gets the few-shot completion prompt. ``model info`` says which, before and after
    conversion, with the example question as the model would see it."""
    base = write_gemma3_gguf(tmp_path / "base.gguf", Q.Q8_0, seed=1)
    chat = write_gemma3_gguf(tmp_path / "it.gguf", Q.Q8_0, chat_template=GEMMA3_CHAT_TEMPLATE, seed=2)
    info = _info(tmp_path, chat.path)
    assert (info["prompt_style"], info["chat_template"], info["built"]) == (
        "chat",
        "GGUF tokenizer.chat_template",
        False,
    )
    assert info["prompt_example"] == CHAT_EXAMPLE
    assert info["gguf_file"] == {
        "architecture": "gemma3",
        "name": "synthetic gemma 3",
        "size_label": None,
        "tensor_types": {"F32": 13, "Q8_0": 15},
        "chat_template": True,
    }
    info = _info(tmp_path, base.path)
    assert (info["prompt_style"], info["chat_template"]) == ("completion", None)
    assert str(info["prompt_example"]).endswith("Question: What is the capital of France?\nAnswer:")

    models = tmp_path / "models"
    style, dtype, ids = anyio.run(_answer, chat.path, models)
    assert (style, dtype) == ("chat", "q8_0")
    assert ids[:2] == [2, 5]  # <bos> <start_of_turn>, each one token
    assert ids.count(6) == 1  # one <end_of_turn>
    style, _, base_ids = anyio.run(_answer, base.path, models)
    assert style == "completion"
    assert 5 not in base_ids
    info = _info(tmp_path, chat.path)
    assert (info["built"], info["prompt_style"], info["prompt_example"]) == (True, "chat", CHAT_EXAMPLE)
    assert str(info["chat_template"]).endswith("chat_template.jinja")


def test_linear_rope_scaling_reaches_both_decoders(tmp_path: Path) -> None:
    """Gemma 3 4B and up scale their global layers' positions (GGUF rope.scaling linear): the config
    says so, transformers and the int8 decoder agree on the logits, and the int8 rotary table is
    the scaled one."""
    shape = Shape(layers=6, rope_linear=8.0)
    synthetic = write_gemma3_gguf(tmp_path / "scaled.gguf", Q.Q8_0, shape=shape, seed=3)
    store = ModelStore(tmp_path / "models")
    q8 = GemmaModel.load(GemmaSettings(model=str(synthetic.path)), store)
    reference = GemmaModel.load(GemmaSettings(model=str(synthetic.path), dtype="float32"), store)
    try:
        config = json.loads((store.resolve(str(synthetic.path)).checkpoint / "config.json").read_text())
        assert config["rope_parameters"]["full_attention"] == {
            "rope_theta": 1_000_000.0,
            "rope_type": "linear",
            "factor": 8.0,
        }
        assert config["layer_types"][5] == "full_attention"
        ids = [2, *range(300, 330)]
        import torch

        reference.use_fast_decoder(False)  # transformers' own forward
        with torch.inference_mode():
            want = reference._stepper(ids, capacity=len(ids))(None).numpy()
        assert q8._q8 is not None
        decoder = Q8Decoder(q8._q8, len(ids))
        got = decoder.forward(np.asarray(ids, dtype=np.int64))
        assert np.corrcoef(got, want)[0, 1] > 0.999
        cos, _ = decoder._rope[False]
        inv = 1.0 / 1_000_000.0 ** (np.arange(0, 128, 2) / 128) / 8.0
        np.testing.assert_allclose(cos[7, :64], np.cos(7 * inv), atol=1e-6)
    finally:
        q8.close()
        reference.close()


def test_files_that_cannot_convert_are_refused_before_any_work(tmp_path: Path) -> None:
    llama = tmp_path / "llama.gguf"
    writer = GGUFWriter(str(llama), "llama")
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelUnavailableError, match="'llama' model; only Gemma 3"):
        convert_gguf(llama, tmp_path / "out")
    ints = tmp_path / "ints.gguf"
    writer = GGUFWriter(str(ints), "gemma3")
    writer.add_tensor("token_embd.weight", np.zeros((4, 32), dtype=np.int8))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ModelUnavailableError, match="stored as I8, which the gguf package cannot"):
        convert_gguf(ints, tmp_path / "out")
    # a type id this gguf package does not know (a newer llama.cpp's): the tensor table's type field
    raw = bytearray(ints.read_bytes())
    name = b"token_embd.weight"
    at = raw.index(name) + len(name) + 4 + 8 * 2  # n_dims (u32), then two u64 dims, then the type
    raw[at : at + 4] = (200).to_bytes(4, "little")
    unknown = tmp_path / "unknown.gguf"
    unknown.write_bytes(bytes(raw))
    with pytest.raises(ModelUnavailableError, match="GGML type 200, which this version of the gguf package"):
        convert_gguf(unknown, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_conversion_reports_dequantising_progress_to_the_end(tmp_path: Path) -> None:
    from mcp_gemma.llm.convert import PROGRESS_STEPS, parse_counted

    synthetic = write_gemma3_gguf(tmp_path / "tiny.gguf", GGMLQuantizationType.Q8_0)
    heard: list[str] = []
    convert_gguf(synthetic.path, tmp_path / "converted", progress=heard.append)
    counted = [c for c in map(parse_counted, heard) if c is not None]
    assert 2 <= len(counted) <= PROGRESS_STEPS + 1, heard
    assert {(label, unit) for label, _, _, unit in counted} == {("dequantising", "MiB")}
    done, totals = [c[1] for c in counted], {c[2] for c in counted}
    assert len(totals) == 1 and done[0] == 0 and done[-1] == totals.pop() and done == sorted(done)
    assert heard[0] == "reading GGUF metadata" and heard[-1] == "building config and tokenizer"
