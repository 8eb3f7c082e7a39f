"""The interface every attention backend plugin implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Protocol

import torch

from ember.attention.metadata import AttentionMetadata


class AttentionLayerSpec(Protocol):
    """What a backend may read from the layer it serves (ember.layers.attention.Attention provides it)."""

    layer_idx: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    scale: float
    sliding_window: int | None   # attend to keys with q_pos - k_pos < sliding_window; None = full
    logits_soft_cap: float | None
    # fp32 scalar tensors on the cache's device; an fp8 (e4m3) cache stores k / k_scale and v / v_scale
    k_scale: torch.Tensor
    v_scale: torch.Tensor


class AttentionBackend(ABC):
    """One object per engine, shared by all layers; the engine picks it by registry name."""

    name: str = ""
    # True when a decode-only step's launches depend on nothing but the batch size and `meta.seq_len_bound`
    # (no host reads of this step's lengths), so the engine may capture it in a CUDA graph and replay it.
    supports_cuda_graphs: bool = False

    def __init__(self, device: torch.device, dtype: torch.dtype) -> None:
        self.device = torch.device(device)
        self.dtype = dtype

    @abstractmethod
    def forward(self, layer: AttentionLayerSpec, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                kv_cache: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        """Write the new k/v into `kv_cache` at `meta.slot_mapping`, then attend.

        q: [T, Hq, D], k and v: [T, Hkv, D], kv_cache: [2, num_blocks, block_size, Hkv, D] -> out [T, Hq, D].
        Query i of a sequence sits at position seq_len - query_len + i and sees keys at positions <= its own.
        The cache is in q's dtype or e4m3 (`ember.attention.kv_quant`): then k/v are stored divided by
        `layer.k_scale` / `layer.v_scale` and read back multiplied by them.
        """
