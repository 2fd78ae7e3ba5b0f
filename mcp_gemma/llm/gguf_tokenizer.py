"""The tokenizer a Gemma GGUF file describes, built with the ``tokenizers`` library alone.

A GGUF carries no ``tokenizer.json``: it stores the SentencePiece vocabulary (``tokenizer.ggml.tokens``),
each token's type and the special token ids as metadata. This builds the same tokenizer that
transformers' GGUF loader builds for Gemma (``GemmaTokenizer``: BPE with byte fallback, spaces as
``▁``, merges recovered from the vocabulary in file order, control tokens added as special tokens,
``<bos>`` added by the post-processor) without importing transformers or torch, so the first
conversion of a model runs on the lean install. ``tests/llm/test_gguf_types.py`` checks the result
against transformers' own build.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from mcp_gemma.errors import ModelUnavailableError

TOKENS = "tokenizer.ggml.tokens"
TOKEN_TYPES = "tokenizer.ggml.token_type"
ARRAYS = (TOKENS, TOKEN_TYPES)  # the metadata arrays the tokenizer needs (read_gguf_tables keeps them)

_CONTROL, _USER_DEFINED = 3, 4  # llama.cpp token types
_SPECIAL_IDS = {
    "bos_token": "tokenizer.ggml.bos_token_id",
    "eos_token": "tokenizer.ggml.eos_token_id",
    "unk_token": "tokenizer.ggml.unknown_token_id",
    "pad_token": "tokenizer.ggml.padding_token_id",
}
# GemmaTokenizer's defaults for the special tokens the file does not name.
_DEFAULTS = {"unk_token": "<unk>", "bos_token": "<bos>", "eos_token": "<eos>", "pad_token": "<pad>"}
MASK_TOKEN = "<mask>"


@dataclass(frozen=True)
class GgufTokenizer:
    """A built tokenizer and what goes beside it in the checkpoint directory."""

    tokenizer: Any  # tokenizers.Tokenizer
    config: dict[str, Any]  # tokenizer_config.json
    chat_template: str | None  # chat_template.jinja (instruction-tuned checkpoints)


def recover_merges(tokens: Sequence[str]) -> list[tuple[str, str]]:
    """BPE merges implied by a SentencePiece vocabulary: every split of a token into two tokens,
    best first. Gemma's scores do not follow its merge order; the order of the tokens in the file
    does (transformers' ``generate_merges`` with positions as scores, same ordering and ties)."""
    vocab = {token: index for index, token in enumerate(tokens)}
    scores = {token: -index for index, token in enumerate(tokens)}
    merges: list[tuple[str, str, int]] = []
    for merged, score in scores.items():
        local = [
            (merged[:cut], merged[cut:], score)
            for cut in range(1, len(merged))
            if merged[:cut] in vocab and merged[cut:] in vocab
        ]
        local.sort(key=lambda m: (vocab[m[0]], vocab[m[1]]))
        merges.extend(local)
    merges.sort(key=lambda m: (m[2], len(m[0]), len(m[1])), reverse=True)
    return [(left, right) for left, right, _ in merges]


def build_gemma_tokenizer(metadata: dict[str, Any]) -> GgufTokenizer:
    """The Gemma tokenizer of a GGUF file's metadata (with the :data:`ARRAYS` read)."""
    from tokenizers import AddedToken, Tokenizer, decoders, normalizers, pre_tokenizers, processors
    from tokenizers.models import BPE

    model = metadata.get("tokenizer.ggml.model")
    raw_tokens = metadata.get(TOKENS)
    if model != "llama" or not isinstance(raw_tokens, list):
        raise ModelUnavailableError(
            f"the GGUF file's tokenizer is {model!r}; Gemma files carry a SentencePiece ('llama') vocabulary"
        )
    types: list[int] = list(metadata.get(TOKEN_TYPES) or [])
    # A token of two or more spaces is stored as real spaces; the normalizer looks it up as "▁▁".
    tokens = ["\u2581" * len(t) if " " in t and not t.strip() else t for t in raw_tokens]
    vocab = {token: index for index, token in enumerate(tokens)}
    names = {
        name: raw_tokens[int(metadata[key])] if key in metadata else _DEFAULTS[name]
        for name, key in _SPECIAL_IDS.items()
    }
    tokenizer = Tokenizer(
        BPE(
            vocab=vocab,
            merges=recover_merges(tokens),
            fuse_unk=True,
            unk_token=names["unk_token"],
            dropout=None,
            byte_fallback=True,
        )
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Split(pattern=" ", behavior="merged_with_previous", invert=False)
    tokenizer.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse()]
    )
    tokenizer.normalizer = normalizers.Replace(" ", "▁")
    # As transformers does: the named special tokens first, then the file's control tokens as
    # special tokens, then its user-defined ones as plain added tokens (kept whole in text).
    named = [names["unk_token"], names["bos_token"], names["eos_token"], names["pad_token"], MASK_TOKEN]
    tokenizer.add_special_tokens(
        [AddedToken(t, special=True, normalized=False) for t in dict.fromkeys(named)]
    )
    control = [t for t, kind in zip(raw_tokens, types, strict=False) if kind == _CONTROL]
    if control:
        tokenizer.add_special_tokens([AddedToken(t, normalized=False, special=True) for t in control])
    user = [t for t, kind in zip(raw_tokens, types, strict=False) if kind == _USER_DEFINED and t in vocab]
    if user:
        tokenizer.add_tokens([AddedToken(t, normalized=False, special=False) for t in user])
    add_bos = bool(metadata.get("tokenizer.ggml.add_bos_token", True))
    add_eos = bool(metadata.get("tokenizer.ggml.add_eos_token", False))
    tokenizer.post_processor = _post_processor(processors, tokenizer, names, add_bos, add_eos)
    config: dict[str, Any] = {
        "backend": "tokenizers",
        **{name: names[name] for name in ("bos_token", "eos_token", "pad_token", "unk_token")},
        "mask_token": MASK_TOKEN,
        "model_max_length": 1000000000000000019884624838656,  # transformers' "no limit"
        "tokenizer_class": "GemmaTokenizer",
    }
    if not add_bos:
        config["add_bos_token"] = False
    if add_eos:
        config["add_eos_token"] = True
    template = metadata.get("tokenizer.chat_template")
    return GgufTokenizer(tokenizer, config, template if isinstance(template, str) and template else None)


def _post_processor(processors: Any, tokenizer: Any, names: dict[str, str], bos: bool, eos: bool) -> Any:
    """transformers' ``update_post_processor``: ``<bos>`` (and ``<eos>``) around each sequence."""
    b, e = names["bos_token"], names["eos_token"]
    single = f"{(b + ':0 ') if bos else ''}$A:0{(' ' + e + ':0') if eos else ''}"
    pair = f"{single}{(' ' + b + ':1') if bos else ''} $B:1{(' ' + e + ':1') if eos else ''}"
    special = [(t, tokenizer.token_to_id(t)) for t, on in ((b, bos), (e, eos)) if on]
    return processors.TemplateProcessing(single=single, pair=pair, special_tokens=special)
