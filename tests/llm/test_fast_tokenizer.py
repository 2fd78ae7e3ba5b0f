"""The Rust tokenizer (``tokenizer.bin``) against ``tokenizers`` itself, on the real Gemma 3 270M
vocabulary from the packaged GGUF: the same ids and the same decoded text over a large varied
corpus (every ``pydoc_data`` topic, standard-library sources, HTML5 entities, byte-fallback and
special-token edge cases), its file refused when damaged, and the model cache using and rebuilding it.
"""

from __future__ import annotations

import html.entities
import json
import shutil
import sysconfig
from pathlib import Path
from pydoc_data.topics import topics
from typing import Any

import pytest

from mcp_gemma.errors import InvalidInputError
from mcp_gemma.llm.convert import MARKER, read_gguf_tables
from mcp_gemma.llm.fast_tokenizer import FAST_TOKENIZER, fast_parts, load_fast_tokenizer
from mcp_gemma.llm.gguf_tokenizer import ARRAYS, build_gemma_tokenizer
from mcp_gemma.llm.tokenizer import CheckpointTokenizer, _JsonTokenizer
from mcp_gemma.native import BpeTokenizer
from tests.native.gil import assert_call_releases_the_gil

EDGE_CASES = [
    "",
    " ",
    "   ",
    "a",
    " leading",
    "trailing ",
    "  two  spaces  between  ",
    "\n",
    "\n\n\nthree newlines\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\n\nmany",
    "\ttab\t\tand\t\t\t tabs \t\n mixed \r\n crlf",
    "emoji 😀👍🏽 👨‍👩‍👧‍👦 🧬 and flags 🇫🇷",
    "rare CJK 𠜎𠜱𠝹𠱓 𪚥 and 丂 ㄅ ꀀ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢",
    "\u0000\u0001\u007f\u0085\u00a0\u2028\u3000\ufeff\U000e0100\U0010fffd",
    "▁ already a space mark ▁▁",
    "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
    "text<bos>inside<eos><pad><unk><mask> and <start_of_image>",
    "<start_of broken <start_of_turn <end_of_turn> <unused0><unused6241>",
    "<table><tr><td>cell</td></tr></table> <b>bold</b> [multimodal]",
    "<<start_of_turn>>",
    "café naïve Ünïcödé Ελληνικά русский العربية हिन्दी 日本語 한국어",
    "x" * 3000,
    "ab " * 2000,
]


def _stdlib_sources() -> list[str]:
    """Forty standard-library modules, spread over the alphabet."""
    files = sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py"))
    picked = files[:: max(1, len(files) // 40)][:40]
    return [path.read_text(encoding="utf-8", errors="replace") for path in picked]


CORPUS = [
    *topics.values(),
    *_stdlib_sources(),
    " ".join(sorted(set(html.entities.html5.values()))),
    *EDGE_CASES,
]


@pytest.fixture(scope="module")
def built(packaged_gguf: Path) -> tuple[Any, dict[str, Any]]:
    """The ``tokenizers`` tokenizer the conversion builds for the packaged GGUF, and its JSON."""
    metadata, _ = read_gguf_tables(packaged_gguf, arrays=ARRAYS)
    tokenizer = build_gemma_tokenizer(metadata)
    return tokenizer, json.loads(tokenizer.tokenizer.to_str())


@pytest.fixture(scope="module")
def reference(built: tuple[Any, dict[str, Any]]) -> _JsonTokenizer:
    return _JsonTokenizer(built[0].tokenizer)


@pytest.fixture(scope="module")
def fast(built: tuple[Any, dict[str, Any]], tmp_path_factory: pytest.TempPathFactory) -> BpeTokenizer:
    """The Rust tokenizer through its file, as a cached load reads it."""
    parts = fast_parts(built[1])
    assert parts is not None
    path = tmp_path_factory.mktemp("fast") / FAST_TOKENIZER
    BpeTokenizer.build(**parts).save(path)
    return BpeTokenizer.load(path)


def test_same_ids_and_text_as_tokenizers_on_a_large_corpus(
    fast: BpeTokenizer, reference: _JsonTokenizer
) -> None:
    tokens = 0
    for text in CORPUS:
        ids = fast.encode(text)
        assert ids == reference.encode(text), text[:200]
        assert fast.encode(text, add_special_tokens=False) == ids[1:]
        tokens += len(ids)
        for skip in (True, False):
            assert fast.decode(ids, skip) == reference.decode(ids, skip), text[:200]
        if "\u2581" not in text:  # the decoder writes every ▁ as a space
            assert fast.decode(ids, skip_special_tokens=False) == "<bos>" + text
    assert tokens > 300_000  # the corpus is large enough to exercise the merges


def test_edge_cases_exact_ids(fast: BpeTokenizer, reference: _JsonTokenizer) -> None:
    start, end = fast.token_to_id("<start_of_turn>"), fast.token_to_id("<end_of_turn>")
    assert (start, end) == (105, 106)
    assert fast.encode("") == [2]
    assert fast.encode("", add_special_tokens=False) == []
    ids = fast.encode("<start_of_turn>user\nHi<end_of_turn>")
    assert ids[:2] == [2, 105] and ids[-1] == 106
    assert fast.decode(ids) == "user\nHi"
    assert fast.decode(ids, skip_special_tokens=False) == "<bos><start_of_turn>user\nHi<end_of_turn>"
    # A character outside the vocabulary becomes its UTF-8 bytes as <0xNN> tokens, and decodes back.
    rare = "\U000e0100"
    assert fast.token_to_id(rare) is None
    byte_ids = [fast.token_to_id(f"<0x{b:02X}>") for b in rare.encode()]
    assert fast.encode(rare, add_special_tokens=False) == byte_ids
    assert fast.decode(byte_ids) == rare
    # A lone lead byte is not UTF-8: one replacement character, as ``tokenizers`` writes it.
    assert fast.decode(byte_ids[:1]) == reference.decode(byte_ids[:1]) == "\ufffd"
    # Bad input is a clear error, not a crash.
    with pytest.raises(InvalidInputError, match="surrogates not allowed"):
        fast.encode("lone \ud800 surrogate")
    with pytest.raises(InvalidInputError, match="token ids"):
        fast.decode([2, -1])
    # Ids outside the vocabulary are dropped, as ``tokenizers`` does.
    assert fast.decode([2, 10_000_000, 105]) == reference.decode([2, 10_000_000, 105]) == ""


def test_token_pieces_and_lookups_match(fast: BpeTokenizer, reference: _JsonTokenizer) -> None:
    assert fast.vocab_size == 262_144
    assert fast.pieces() == reference.pieces()
    for token in ("<eos>", "<bos>", "<unk>", "▁the", "hello", "<0x0A>", "not-a-token-at-all"):
        assert fast.token_to_id(token) == reference.token_to_id(token)


def test_long_encode_releases_the_gil(fast: BpeTokenizer) -> None:
    text = " ".join(CORPUS[:200])
    assert_call_releases_the_gil(lambda: fast.encode(text))


def test_damaged_files_are_refused(fast: BpeTokenizer, tmp_path: Path) -> None:
    path = tmp_path / FAST_TOKENIZER
    fast.save(path)
    data = path.read_bytes()
    assert BpeTokenizer.load(path).encode("same again") == fast.encode("same again")
    cases = {
        "cut short": data[: len(data) // 2],
        "not an mcp-gemma tokenizer file": b'{"version": "1.0", "model": {}}',
        "checksum": data[:100] + bytes([data[100] ^ 0xFF]) + data[101:],
        "version 7": data[:8] + (7).to_bytes(4, "little") + data[12:],
    }
    for message, damaged in cases.items():
        path.write_bytes(damaged)
        with pytest.raises(InvalidInputError, match=message):
            BpeTokenizer.load(path)
    with pytest.raises(InvalidInputError, match="could not read"):
        BpeTokenizer.load(tmp_path / "missing.bin")


def test_other_pipelines_get_no_binary_file(built: tuple[Any, dict[str, Any]]) -> None:
    data = built[1]
    assert fast_parts(data) is not None
    for key, value in (
        ("normalizer", {"type": "NFKC"}),
        ("decoder", {"type": "ByteLevel"}),
        ("post_processor", {"type": "ByteLevel"}),
        ("model", {**data["model"], "ignore_merges": True}),
        ("added_tokens", [{**data["added_tokens"][0], "lstrip": True}]),
    ):
        assert fast_parts({**data, key: value}) is None, key


def test_model_cache_writes_uses_and_rebuilds_the_file(
    built: tuple[Any, dict[str, Any]], reference: _JsonTokenizer, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "cache"
    checkpoint.mkdir()
    built[0].tokenizer.save(str(checkpoint / "tokenizer.json"))
    (checkpoint / "tokenizer_config.json").write_text(json.dumps(built[0].config), encoding="utf-8")
    plain = tmp_path / "plain"
    shutil.copytree(checkpoint, plain)
    (checkpoint / MARKER).write_text("{}", encoding="utf-8")
    sample = CORPUS[0] + EDGE_CASES[14]

    first = CheckpointTokenizer(checkpoint)  # an older cache: tokenizers, and the file written
    assert isinstance(first._tok, _JsonTokenizer)
    assert load_fast_tokenizer(checkpoint) is not None
    second = CheckpointTokenizer(checkpoint)
    assert isinstance(second._tok, BpeTokenizer)
    for tok in (first, second):
        assert tok.encode(sample) == reference.encode(sample)
        assert tok.decode(tok.encode(sample), skip_special_tokens=False) == "<bos>" + sample
        assert (tok.eos_token_id, tok.unk_token_id) == (1, 3)
        assert tok.convert_tokens_to_ids("<end_of_turn>") == 106

    (checkpoint / FAST_TOKENIZER).write_bytes(b"garbage")  # damaged: read from JSON, file rebuilt
    third = CheckpointTokenizer(checkpoint)
    assert isinstance(third._tok, _JsonTokenizer)
    assert isinstance(CheckpointTokenizer(checkpoint)._tok, BpeTokenizer)

    CheckpointTokenizer(plain)  # not a model cache of ours: nothing written beside it
    assert not (plain / FAST_TOKENIZER).exists()
