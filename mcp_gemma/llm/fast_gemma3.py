"""A lean Gemma 3 text decoder over the weights of a loaded transformers model.

Why it exists: on a small CPU the transformers forward spends most of each decode step in
Python (cache objects, mask building, hooks) rather than in matrix products. This module does
the same arithmetic as ``Gemma3ForCausalLM`` with fused q/k/v and gate/up projections, one
preallocated KV buffer per layer and precomputed rotary tables, so a token costs a few dozen
torch calls. ``tests/llm`` checks that its greedy tokens match the transformers model's.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch


def supports(config: Any) -> bool:
    """True when ``config`` is a Gemma 3 text model this decoder reproduces exactly."""
    rope = getattr(config, "rope_parameters", None) or {}
    return (
        getattr(config, "model_type", None) == "gemma3_text"
        and not getattr(config, "attention_bias", False)
        and getattr(config, "attn_logit_softcapping", None) is None
        and getattr(config, "final_logit_softcapping", None) is None
        and getattr(config, "hidden_activation", None) == "gelu_pytorch_tanh"
        and not getattr(config, "use_bidirectional_attention", False)
        and all(isinstance(p, dict) and p.get("rope_type") in ROPE_TYPES for p in rope.values())
        and set(rope) >= set(getattr(config, "layer_types", []) or ["?"])
    )


ROPE_TYPES = ("default", "linear")  # linear: Gemma 3 4B and larger scale their global layers' positions


def rope_scale(params: dict[str, Any]) -> tuple[float, float]:
    """(theta, factor) of one attention kind's rotary embedding: inverse frequencies are
    ``theta ** -(2i / d) / factor`` (factor 1 unless the rope type is 'linear')."""
    factor = float(params.get("factor", 1.0)) if params.get("rope_type") == "linear" else 1.0
    return float(params["rope_theta"]), factor


Linear = Callable[["torch.Tensor"], "torch.Tensor"]
"""``x [n, in] -> [n, out]`` over a (fused) dense weight."""


@dataclass
class LayerWeights:
    """One decoder layer: fused projections as callables, norm scales as ``(1 + w)`` in float32."""

    qkv: Linear
    o: Linear
    gate_up: Linear
    down: Linear
    norms: tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
    q_norm: torch.Tensor
    k_norm: torch.Tensor
    sliding: bool


@dataclass
class Gemma3Weights:
    """Everything the decoder reads: shapes from the config, weights in whatever form runs fastest."""

    config: Any
    embed: Callable[[torch.Tensor], torch.Tensor]  # token ids [n] -> rows [n, hidden] (unscaled)
    lm_head: Linear
    final_norm: torch.Tensor
    layers: list[LayerWeights]
    dtype: torch.dtype  # of activations and the KV cache
    device: torch.device


def weights_from_transformers(model: Any) -> Gemma3Weights:
    """Fused views of a loaded ``Gemma3ForCausalLM``'s weights (no copy beyond the fusion)."""
    import torch.nn.functional as F

    cfg = model.config
    inner = model.model
    embed_table = inner.embed_tokens.weight
    lm_head = model.lm_head.weight

    def dense(weight: torch.Tensor) -> Linear:
        return lambda x: F.linear(x, weight)

    layers = []
    for layer, kind in zip(inner.layers, cfg.layer_types, strict=True):
        attn, mlp = layer.self_attn, layer.mlp
        layers.append(
            LayerWeights(
                qkv=dense(_fuse(attn.q_proj, attn.k_proj, attn.v_proj)),
                o=dense(attn.o_proj.weight),
                gate_up=dense(_fuse(mlp.gate_proj, mlp.up_proj)),
                down=dense(mlp.down_proj.weight),
                norms=(
                    1.0 + layer.input_layernorm.weight.float(),
                    1.0 + layer.post_attention_layernorm.weight.float(),
                    1.0 + layer.pre_feedforward_layernorm.weight.float(),
                    1.0 + layer.post_feedforward_layernorm.weight.float(),
                ),
                q_norm=1.0 + attn.q_norm.weight.float(),
                k_norm=1.0 + attn.k_norm.weight.float(),
                sliding=kind == "sliding_attention",
            )
        )
    return Gemma3Weights(
        config=cfg,
        embed=lambda ids: F.embedding(ids, embed_table),
        lm_head=dense(lm_head),
        final_norm=1.0 + inner.norm.weight.float(),
        layers=layers,
        dtype=embed_table.dtype,
        device=embed_table.device,
    )


class Gemma3Shape:
    """The sizes and constants of a Gemma 3 text config that a decoder loop needs."""

    def __init__(self, cfg: Any) -> None:
        self.hidden = int(cfg.hidden_size)
        self.n_heads = int(cfg.num_attention_heads)
        self.n_kv = int(cfg.num_key_value_heads)
        self.head_dim = int(cfg.head_dim)
        self.eps = float(cfg.rms_norm_eps)
        self.window = int(cfg.sliding_window)
        self.scale = float(cfg.query_pre_attn_scalar) ** -0.5


class Gemma3Decoder(Gemma3Shape):
    """Prefill and single-token steps for one sequence, with its own KV cache."""

    def __init__(self, weights: Gemma3Weights) -> None:
        import torch

        cfg = weights.config
        super().__init__(cfg)
        self.thetas = {kind: rope_scale(cfg.rope_parameters[kind]) for kind in set(cfg.layer_types)}
        self.embed = weights.embed
        self.dtype = weights.dtype
        self.device = weights.device
        self.embed_scale = torch.tensor(math.sqrt(self.hidden), dtype=self.dtype)
        self.lm_head = weights.lm_head
        self.final_norm = weights.final_norm
        self.layers = weights.layers
        self._k: list[torch.Tensor] = []
        self._v: list[torch.Tensor] = []
        self._rope: dict[bool, tuple[torch.Tensor, torch.Tensor]] = {}
        self.pos = 0

    def session(self, capacity: int) -> Gemma3Decoder:
        """A decoder sharing these weights with its own KV cache for ``capacity`` positions."""
        decoder = copy.copy(self)
        decoder.reset(capacity)
        return decoder

    def reset(self, capacity: int) -> None:
        """Allocate the KV cache and rotary tables for ``capacity`` positions."""
        import torch

        shape = (self.n_kv, capacity, self.head_dim)
        self._k = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        self._v = [torch.empty(shape, dtype=self.dtype, device=self.device) for _ in self.layers]
        positions = torch.arange(capacity, dtype=torch.float32, device=self.device)
        self._rope = {}
        for sliding in (True, False):
            theta, factor = self.thetas["sliding_attention" if sliding else "full_attention"]
            inv = 1.0 / (
                theta ** (torch.arange(0, self.head_dim, 2, device=self.device).float() / self.head_dim)
            )
            inv = inv / factor
            freqs = torch.outer(positions, inv)
            emb = torch.cat((freqs, freqs), dim=-1)
            self._rope[sliding] = (emb.cos().to(self.dtype), emb.sin().to(self.dtype))
        self.pos = 0

    def _rms(self, x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        import torch

        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * scale).to(x.dtype)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """Run ``ids`` (1-D) from the current position; return the logits of the last one (float32)."""
        import torch
        import torch.nn.functional as F

        n = int(ids.shape[0])
        start, end = self.pos, self.pos + n
        h = self.embed(ids) * self.embed_scale  # [n, hidden]
        nq, nkv, hd = self.n_heads * self.head_dim, self.n_kv * self.head_dim, self.head_dim
        for i, layer in enumerate(self.layers):
            x = self._rms(h, layer.norms[0])
            qkv = layer.qkv(x)
            q = qkv[:, :nq].view(n, self.n_heads, hd).transpose(0, 1)  # [H, n, D]
            k = qkv[:, nq : nq + nkv].view(n, self.n_kv, hd).transpose(0, 1)
            v = qkv[:, nq + nkv :].view(n, self.n_kv, hd).transpose(0, 1)
            q = self._rms(q, layer.q_norm)
            k = self._rms(k, layer.k_norm)
            cos, sin = self._rope[layer.sliding]
            cos, sin = cos[start:end], sin[start:end]
            q = q * cos + torch.cat((-q[..., hd // 2 :], q[..., : hd // 2]), dim=-1) * sin
            k = k * cos + torch.cat((-k[..., hd // 2 :], k[..., : hd // 2]), dim=-1) * sin
            self._k[i][:, start:end] = k
            self._v[i][:, start:end] = v
            lo = max(0, end - self.window) if layer.sliding and n == 1 else 0
            keys, values = self._k[i][:, lo:end], self._v[i][:, lo:end]
            if n == 1 and self.n_kv == 1:
                # One query against a single shared KV head: two small matmuls beat SDPA's
                # parallel kernel, whose thread hand-offs cost more than the arithmetic here.
                scores = torch.mm(q[:, 0] * self.scale, keys[0].t())  # [H, S]
                attn = torch.mm(torch.softmax(scores.float(), dim=-1).to(values.dtype), values[0])[
                    None, :, None
                ]
            elif n == 1:
                attn = F.scaled_dot_product_attention(
                    q.unsqueeze(0), keys.unsqueeze(0), values.unsqueeze(0), scale=self.scale, enable_gqa=True
                )
            else:
                attn = F.scaled_dot_product_attention(
                    q.unsqueeze(0),
                    keys.unsqueeze(0),
                    values.unsqueeze(0),
                    attn_mask=self._mask(start, end, layer.sliding),
                    scale=self.scale,
                    enable_gqa=True,
                )
            attn = attn[0].transpose(0, 1).reshape(n, nq)
            h = h + self._rms(layer.o(attn), layer.norms[1])
            x = self._rms(h, layer.norms[2])
            gate, up = layer.gate_up(x).chunk(2, dim=-1)
            h = h + self._rms(layer.down(F.gelu(gate, approximate="tanh") * up), layer.norms[3])
        self.pos = end
        last = self._rms(h[-1:], self.final_norm)
        return self.lm_head(last)[0].float()

    def _mask(self, start: int, end: int, sliding: bool) -> torch.Tensor:
        import torch

        q_pos = torch.arange(start, end, device=self.device)[:, None]
        k_pos = torch.arange(0, end, device=self.device)[None, :]
        mask = k_pos <= q_pos
        if sliding:
            mask &= k_pos > q_pos - self.window
        return mask


def _fuse(*linears: Any) -> torch.Tensor:
    """Concatenate the weights of linears that read the same input into one matrix.

    The modules' own weights become row views of it, so the model keeps working (the
    transformers path) and the fused copy costs no extra memory.
    """
    import torch

    fused = torch.cat([lin.weight.detach() for lin in linears]).contiguous()
    row = 0
    for lin in linears:
        rows = lin.weight.shape[0]
        lin.weight.data = fused[row : row + rows]
        row += rows
    return fused
