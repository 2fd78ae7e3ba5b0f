"""Tiny Gemma-3-shaped GGUF files written with the ``gguf`` package, for the conversion tests.

The weights are random but every value is known: F16 and Q8_0 tensors are quantised from a float
source with ``gguf.quants.quantize``; the K-quants (which the ``gguf`` package can only dequantise)
are random raw blocks with finite scales, whose values :func:`decode_k_quant` computes from the
ggml block layouts, independently of the package's decoders.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType, GGUFWriter, RopeScalingType, TokenType
from gguf import quantize as gguf_quantize

Q = GGMLQuantizationType
QK_K = 256
BLOCK_BYTES = {Q.Q4_K: 144, Q.Q5_K: 176, Q.Q6_K: 210}

# Gemma 3's instruction-tuned chat template (as the 1B/4B IT GGUFs carry it).
GEMMA3_CHAT_TEMPLATE = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\n'}}
{%- endif -%}
"""

SPECIAL = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"]
WORDS = ["the", "capital", "of", "France", "is", "Paris", "What", "Answer", "Question", "model", "user"]


def vocabulary(size: int) -> tuple[list[str], list[int]]:
    """A SentencePiece-style vocabulary of ``size`` tokens and their llama.cpp token types: control
    tokens, byte fallbacks, a user-defined newline, letters, words and their pieces, filler."""
    tokens = list(SPECIAL)
    types = [TokenType.CONTROL] * len(SPECIAL)
    tokens += [f"<0x{b:02X}>" for b in range(256)]
    types += [TokenType.BYTE] * 256
    tokens.append("\n")
    types.append(TokenType.USER_DEFINED)
    pieces = ["▁", "  ", *"abcdefghijklmnopqrstuvwxyzAFPQW?:"]
    for word in WORDS:
        pieces += [word[:2], word[2:], word, f"▁{word}"]
    for piece in dict.fromkeys(pieces):
        if piece not in tokens:
            tokens.append(piece)
            types.append(TokenType.NORMAL)
    filler = 0
    while len(tokens) < size:
        tokens.append(f"▁w{filler}")
        types.append(TokenType.NORMAL)
        filler += 1
    return tokens[:size], [int(t) for t in types[:size]]


@dataclass
class Shape:
    """Sizes of the tiny model (rows of K-quants must be multiples of 256)."""

    hidden: int = 256
    heads: int = 2
    kv_heads: int = 1
    head_dim: int = 128
    ffn: int = 512
    layers: int = 2
    vocab: int = 512
    rope_linear: float | None = None


@dataclass
class Synthetic:
    """A written GGUF file and the float value of every tensor it holds (transformers names)."""

    path: Path
    shape: Shape
    expected: dict[str, np.ndarray] = field(default_factory=dict)
    tolerance: dict[str, np.ndarray] = field(default_factory=dict)  # per-element bound of |dense - source|


def _f16(rng: np.random.Generator, n: int, lo: float, hi: float) -> np.ndarray:
    return rng.uniform(lo, hi, size=n).astype(np.float16)


def random_k_blocks(qtype: GGMLQuantizationType, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    """``n_blocks`` raw blocks of a K-quant with random codes and small finite f16 scales."""
    blocks = rng.integers(0, 256, size=(n_blocks, BLOCK_BYTES[qtype]), dtype=np.uint8)
    if qtype in (Q.Q4_K, Q.Q5_K):  # d and dmin lead the block
        blocks[:, 0:2] = _f16(rng, n_blocks, 1e-4, 2e-3).view(np.uint8).reshape(n_blocks, 2)
        blocks[:, 2:4] = _f16(rng, n_blocks, 1e-4, 2e-3).view(np.uint8).reshape(n_blocks, 2)
    else:  # Q6_K: d trails the block
        blocks[:, 208:210] = _f16(rng, n_blocks, 1e-4, 2e-3).view(np.uint8).reshape(n_blocks, 2)
    return blocks


def _scale_min_k4(scales: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The eight 6-bit (scale, min) pairs in a Q4_K / Q5_K block's 12 bytes (ggml's get_scale_min_k4)."""
    sc = np.zeros((scales.shape[0], 8), dtype=np.float32)
    mn = np.zeros((scales.shape[0], 8), dtype=np.float32)
    q = scales.astype(np.int32)
    for j in range(8):
        if j < 4:
            sc[:, j] = q[:, j] & 63
            mn[:, j] = q[:, j + 4] & 63
        else:
            sc[:, j] = (q[:, j + 4] & 0xF) | ((q[:, j - 4] >> 6) << 4)
            mn[:, j] = (q[:, j + 4] >> 4) | ((q[:, j] >> 6) << 4)
    return sc, mn


def decode_k_quant(qtype: GGMLQuantizationType, blocks: np.ndarray) -> np.ndarray:
    """The float32 values of raw K-quant blocks, following ggml's dequantize_row_q{4,5,6}_K."""
    n = blocks.shape[0]
    out = np.zeros((n, QK_K), dtype=np.float32)
    if qtype in (Q.Q4_K, Q.Q5_K):
        d = blocks[:, 0:2].copy().view(np.float16).astype(np.float32)[:, 0]
        dmin = blocks[:, 2:4].copy().view(np.float16).astype(np.float32)[:, 0]
        sc, mn = _scale_min_k4(blocks[:, 4:16])
        qh = blocks[:, 16:48].astype(np.int32) if qtype == Q.Q5_K else None
        qs = (blocks[:, 48:176] if qtype == Q.Q5_K else blocks[:, 16:144]).astype(np.int32)
        for j in range(4):  # 64 values per step: low nibbles with sub-block 2j, high with 2j + 1
            low = qs[:, 32 * j : 32 * j + 32] & 0xF
            high = qs[:, 32 * j : 32 * j + 32] >> 4
            if qh is not None:
                low = low + np.where(qh & (1 << (2 * j)), 16, 0)
                high = high + np.where(qh & (2 << (2 * j)), 16, 0)
            for half, codes in ((0, low), (1, high)):
                sub = 2 * j + half
                scale = (d * sc[:, sub])[:, None]
                offset = (dmin * mn[:, sub])[:, None]
                out[:, 64 * j + 32 * half : 64 * j + 32 * half + 32] = scale * codes - offset
        return out
    ql = blocks[:, 0:128].astype(np.int32)
    qh6 = blocks[:, 128:192].astype(np.int32)
    scales = blocks[:, 192:208].copy().view(np.int8).astype(np.float32)
    d = blocks[:, 208:210].copy().view(np.float16).astype(np.float32)[:, 0]
    for half in range(2):
        l_lo, h_lo, s_lo = ql[:, 64 * half : 64 * half + 64], qh6[:, 32 * half : 32 * half + 32], 8 * half
        for part in range(4):
            for l_idx in range(32):
                if part == 0:
                    q = (l_lo[:, l_idx] & 0xF) | (((h_lo[:, l_idx] >> 0) & 3) << 4)
                elif part == 1:
                    q = (l_lo[:, l_idx + 32] & 0xF) | (((h_lo[:, l_idx] >> 2) & 3) << 4)
                elif part == 2:
                    q = (l_lo[:, l_idx] >> 4) | (((h_lo[:, l_idx] >> 4) & 3) << 4)
                else:
                    q = (l_lo[:, l_idx + 32] >> 4) | (((h_lo[:, l_idx] >> 6) & 3) << 4)
                scale = scales[:, s_lo + l_idx // 16 + 2 * part]
                out[:, 128 * half + 32 * part + l_idx] = d * scale * (q - 32)
    return out


def _matrix(
    qtype: GGMLQuantizationType, rows: int, cols: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(raw data for the writer, the float values it decodes to, the bound of |decoded - source|)."""
    if qtype in BLOCK_BYTES:
        blocks = random_k_blocks(qtype, rows * cols // QK_K, rng)
        values = decode_k_quant(qtype, blocks).reshape(rows, cols)
        return blocks.reshape(rows, -1), values, np.full((rows, cols), 1e-7, dtype=np.float32)
    source = rng.normal(0.0, 0.05, size=(rows, cols)).astype(np.float32)
    if qtype == Q.F16:
        # half an f16 step: 2**-11 relative, 2**-25 absolute among the subnormals
        return source.astype(np.float16), source, np.abs(source) * 2.0**-11 + 2.0**-25
    if qtype == Q.Q8_0:  # one f16 scale per 32: |error| <= half a step, plus the scale's own rounding
        amax = np.abs(source).reshape(rows, -1, 32).max(axis=-1, keepdims=True)
        bound = np.broadcast_to(amax / 127 * (0.5 + 2.0**-10 * 127), (rows, cols // 32, 32))
        return gguf_quantize(source, Q.Q8_0), source, bound.reshape(rows, cols) + 1e-8
    raise ValueError(f"no synthetic data for {qtype.name}")


_BLOCK_TENSORS = {  # gguf name -> (transformers name, rows, cols) as functions of the shape
    "attn_q": ("self_attn.q_proj", lambda s: (s.heads * s.head_dim, s.hidden)),
    "attn_k": ("self_attn.k_proj", lambda s: (s.kv_heads * s.head_dim, s.hidden)),
    "attn_v": ("self_attn.v_proj", lambda s: (s.kv_heads * s.head_dim, s.hidden)),
    "attn_output": ("self_attn.o_proj", lambda s: (s.hidden, s.heads * s.head_dim)),
    "ffn_gate": ("mlp.gate_proj", lambda s: (s.ffn, s.hidden)),
    "ffn_up": ("mlp.up_proj", lambda s: (s.ffn, s.hidden)),
    "ffn_down": ("mlp.down_proj", lambda s: (s.hidden, s.ffn)),
}
_NORMS = {  # gguf name -> (transformers name, size)
    "attn_norm": ("input_layernorm", lambda s: s.hidden),
    "post_attention_norm": ("post_attention_layernorm", lambda s: s.hidden),
    "ffn_norm": ("pre_feedforward_layernorm", lambda s: s.hidden),
    "post_ffw_norm": ("post_feedforward_layernorm", lambda s: s.hidden),
    "attn_q_norm": ("self_attn.q_norm", lambda s: s.head_dim),
    "attn_k_norm": ("self_attn.k_norm", lambda s: s.head_dim),
}


def write_gemma3_gguf(
    path: Path,
    qtype: GGMLQuantizationType,
    *,
    shape: Shape | None = None,
    chat_template: str | None = None,
    seed: int = 0,
) -> Synthetic:
    """A Gemma 3 GGUF whose matrices are all stored as ``qtype`` (norms in F32, as llama.cpp keeps them)."""
    s = shape or Shape()
    rng = np.random.default_rng(seed)
    writer = GGUFWriter(str(path), "gemma3")
    writer.add_name("synthetic gemma 3")
    writer.add_context_length(2048)
    writer.add_embedding_length(s.hidden)
    writer.add_block_count(s.layers)
    writer.add_feed_forward_length(s.ffn)
    writer.add_head_count(s.heads)
    writer.add_head_count_kv(s.kv_heads)
    writer.add_key_length(s.head_dim)
    writer.add_value_length(s.head_dim)
    writer.add_layer_norm_rms_eps(1e-6)
    writer.add_rope_freq_base(1_000_000.0)
    writer.add_sliding_window(8)
    if s.rope_linear is not None:
        writer.add_rope_scaling_type(RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(s.rope_linear)
    tokens, types = vocabulary(s.vocab)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores([-float(i) for i in range(len(tokens))])
    writer.add_token_types(types)
    writer.add_bos_token_id(2)
    writer.add_eos_token_id(1)
    writer.add_unk_token_id(3)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    if chat_template is not None:
        writer.add_chat_template(chat_template)
    out = Synthetic(path, s)

    def matrix(gguf_name: str, hf_name: str, rows: int, cols: int) -> None:
        raw, values, bound = _matrix(qtype, rows, cols, rng)
        writer.add_tensor(gguf_name, raw, raw_dtype=qtype if raw.dtype == np.uint8 else None)
        out.expected[hf_name] = values
        out.tolerance[hf_name] = bound

    def norm(gguf_name: str, hf_name: str, size: int) -> None:
        w = rng.normal(0.0, 0.1, size=size).astype(np.float32)
        writer.add_tensor(gguf_name, (1.0 + w).astype(np.float32))  # llama.cpp stores 1 + w
        out.expected[hf_name] = (1.0 + w).astype(np.float32) - np.float32(1.0)
        out.tolerance[hf_name] = np.full(size, 1e-7, dtype=np.float32)

    matrix("token_embd.weight", "model.embed_tokens.weight", s.vocab, s.hidden)
    norm("output_norm.weight", "model.norm.weight", s.hidden)
    for layer in range(s.layers):
        prefix = f"model.layers.{layer}."
        for name, (hf, dims) in _BLOCK_TENSORS.items():
            matrix(f"blk.{layer}.{name}.weight", f"{prefix}{hf}.weight", *dims(s))
        for name, (hf, size) in _NORMS.items():
            norm(f"blk.{layer}.{name}.weight", f"{prefix}{hf}.weight", size(s))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out
