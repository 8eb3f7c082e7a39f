"""Rotary position embeddings for every rope type these families use, computed by transformers' own init functions."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig
from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

from ember.layers.fused import fused_kernels


def rope_parameters(config: PretrainedConfig, layer_type: str | None = None) -> dict:
    """The rope dict of a config (transformers 5 `rope_parameters`, per layer type for e.g. Gemma 3)."""
    params = config.rope_parameters
    return params[layer_type] if layer_type is not None else params


def _default_inv_freq(config: PretrainedConfig, layer_type: str | None) -> tuple[torch.Tensor, float]:
    params = rope_parameters(config, layer_type)
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    dim = int(head_dim * params.get("partial_rotary_factor", 1.0))
    return 1.0 / (params["rope_theta"] ** (torch.arange(0, dim, 2, dtype=torch.float) / dim)), 1.0


def _inv_freq(config: PretrainedConfig, layer_type: str | None, seq_len: int | None = None
              ) -> tuple[torch.Tensor, float]:
    rope_type = rope_parameters(config, layer_type).get("rope_type", "default")
    if rope_type == "default":
        return _default_inv_freq(config, layer_type)
    if rope_type not in ROPE_INIT_FUNCTIONS:
        raise ValueError(f"unsupported rope_type {rope_type!r}; supported: default, {', '.join(ROPE_INIT_FUNCTIONS)}")
    kwargs = {"layer_type": layer_type} if layer_type is not None else {}
    return ROPE_INIT_FUNCTIONS[rope_type](config, "cpu", seq_len=seq_len, **kwargs)


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


class RotaryEmbedding(nn.Module):
    """positions [T], q [T, Hq*D], k [T, Hkv*D] -> rotated q, k (neox half-split layout, as Hugging Face).

    Holds a [max_positions, rotary_dim] fp32 cos and sin cache (attention scaling folded in), built by
    `init_buffers()` after the model is materialised off the meta device. `dynamic` NTK uses its unscaled
    frequencies (exact up to max_position_embeddings); `longrope` uses short factors below
    original_max_position_embeddings and long factors from there on, chosen per position.
    """

    def __init__(self, config: PretrainedConfig, head_dim: int, layer_type: str | None = None) -> None:
        super().__init__()
        self.config = config
        self.layer_type = layer_type
        self.head_dim = head_dim
        self.max_positions = config.max_position_embeddings
        rotary_dim = _default_inv_freq(config, layer_type)[0].numel() * 2
        self.rotary_dim = rotary_dim
        cache_shape = (self.max_positions, rotary_dim)  # fp32 whatever the model dtype, as transformers computes it
        self.register_buffer("cos_cache", torch.empty(cache_shape, dtype=torch.float32), persistent=False)
        self.register_buffer("sin_cache", torch.empty(cache_shape, dtype=torch.float32), persistent=False)

    @torch.no_grad()
    def init_buffers(self) -> None:
        """(Re)compute the cos/sin cache on the buffer's device."""
        params = rope_parameters(self.config, self.layer_type)
        inv_freq, scale = _inv_freq(self.config, self.layer_type)                      # [rotary_dim / 2]
        pos = torch.arange(self.max_positions, dtype=torch.float)
        freqs = pos[:, None] * inv_freq[None, :]                                       # [P, rotary_dim / 2]
        if params.get("rope_type") == "longrope":
            orig = params["original_max_position_embeddings"]
            long_freq, _ = _inv_freq(self.config, self.layer_type, seq_len=orig + 1)
            freqs[orig:] = pos[orig:, None] * long_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)                                        # [P, rotary_dim]
        self.cos_cache.copy_(emb.cos() * scale)
        self.sin_cache.copy_(emb.sin() * scale)

    def forward(self, positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        fused = fused_kernels(q)
        if fused is not None:   # one kernel for q and k instead of ~12 (gather, casts, muls, neg, cats)
            return fused.rotary(positions, q, k, self.cos_cache, self.sin_cache, self.head_dim)
        cos = self.cos_cache[positions].to(q.dtype)[:, None, :]                       # [T, 1, rotary_dim]
        sin = self.sin_cache[positions].to(q.dtype)[:, None, :]
        return self._rotate(q, cos, sin), self._rotate(k, cos, sin)

    def _rotate(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x = x.view(shape[0], -1, self.head_dim)                                        # [T, H, D]
        rot, rest = x[..., :self.rotary_dim], x[..., self.rotary_dim:]
        rot = rot * cos + rotate_half(rot) * sin
        return torch.cat((rot, rest), dim=-1).view(shape)

    def extra_repr(self) -> str:
        return f"rotary_dim={self.rotary_dim}, max_positions={self.max_positions}, layer_type={self.layer_type}"
