"""The attention layer models use: holds the head layout, delegates the math to the step's backend."""

from __future__ import annotations

import torch
from torch import nn

from ember.attention.metadata import AttentionMetadata


class Attention(nn.Module):
    """q [T, Hq*D], k/v [T, Hkv*D] -> [T, Hq*D]; the KV cache of this layer is `meta.kv_caches[layer_idx]`."""

    def __init__(self, layer_idx: int, num_heads: int, num_kv_heads: int, head_dim: int, scale: float,
                 sliding_window: int | None = None, logits_soft_cap: float | None = None) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scale = scale
        self.sliding_window = sliding_window
        self.logits_soft_cap = logits_soft_cap

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        t = q.shape[0]
        out = meta.backend.forward(
            self,
            q.view(t, self.num_heads, self.head_dim),
            k.view(t, self.num_kv_heads, self.head_dim),
            v.view(t, self.num_kv_heads, self.head_dim),
            meta.kv_caches[self.layer_idx],
            meta,
        )
        return out.reshape(t, self.num_heads * self.head_dim)

    def extra_repr(self) -> str:
        return (f"layer={self.layer_idx}, heads={self.num_heads}, kv_heads={self.num_kv_heads}, "
                f"head_dim={self.head_dim}, sliding_window={self.sliding_window}")
