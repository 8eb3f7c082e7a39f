"""The attention layer models use: holds the head layout, delegates the math to the step's backend."""

from __future__ import annotations

import torch
from torch import nn

from ember.attention.metadata import AttentionMetadata


class Attention(nn.Module):
    """q [T, Hq*D], k/v [T, Hkv*D] -> [T, Hq*D]; the KV cache of this layer is `meta.kv_caches[layer_idx]`.

    `k_scale` / `v_scale` (fp32 scalars) matter only for an fp8 KV cache, which stores k / k_scale: the loader sets
    them from the checkpoint (`set_kv_scales_`), they stay 1.0 (uncalibrated, as in vLLM) otherwise, and the
    engine moves them to the cache's device (`kv_scales_to_`). Plain attributes, not buffers: the model is built on
    the meta device and `to_empty` would leave buffers uninitialised.
    """

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
        self.k_scale = torch.ones((), dtype=torch.float32, device="cpu")   # explicit device: never meta
        self.v_scale = torch.ones((), dtype=torch.float32, device="cpu")
        self.kv_scales_calibrated = False

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

    def set_kv_scales_(self, k_scale: torch.Tensor | float, v_scale: torch.Tensor | float) -> None:
        """Calibrated fp8 KV-cache scales (amax / 448), e.g. a checkpoint's `k_proj.k_scale` / `v_proj.v_scale`."""
        scales = [torch.as_tensor(s, dtype=torch.float32).reshape(()) for s in (k_scale, v_scale)]
        for name, s in zip(("k_scale", "v_scale"), scales):
            if not (torch.isfinite(s) and s > 0):
                raise ValueError(f"layer {self.layer_idx}: {name} must be finite and > 0, got {float(s)}")
        self.k_scale, self.v_scale = (s.to(self.k_scale.device) for s in scales)
        self.kv_scales_calibrated = True

    def kv_scales_to_(self, device: torch.device | str) -> None:
        """Move the scales next to the KV cache (the kernels read them as device scalars: CUDA-graph safe)."""
        self.k_scale, self.v_scale = self.k_scale.to(device), self.v_scale.to(device)

    def extra_repr(self) -> str:
        return (f"layer={self.layer_idx}, heads={self.num_heads}, kv_heads={self.num_kv_heads}, "
                f"head_dim={self.head_dim}, sliding_window={self.sliding_window}")
