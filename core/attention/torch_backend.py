"""Reference attention over the paged KV cache in plain PyTorch: runs anywhere, defines correct results."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ember.attention.backend import AttentionBackend, AttentionLayerSpec
from ember.attention.kv_quant import dequantize_kv, is_fp8, quantize_kv
from ember.attention.metadata import AttentionMetadata


def write_kv(kv_cache: torch.Tensor, k: torch.Tensor, v: torch.Tensor, slot_mapping: torch.Tensor,
             k_scale: torch.Tensor | None = None, v_scale: torch.Tensor | None = None) -> None:
    """Scatter k/v [T, Hkv, D] into their cache slots (an fp8 cache stores clamp(k / k_scale), clamp(v / v_scale))."""
    _, num_blocks, block_size, hkv, d = kv_cache.shape
    flat = kv_cache.view(2, num_blocks * block_size, hkv, d)
    if is_fp8(kv_cache.dtype):
        # why: index_copy_ has no float8 kernel on CPU; the bytes are what we copy anyway
        flat = flat.view(torch.uint8)
        k, v = quantize_kv(k, k_scale).view(torch.uint8), quantize_kv(v, v_scale).view(torch.uint8)
    flat[0].index_copy_(0, slot_mapping, k.to(flat.dtype))
    flat[1].index_copy_(0, slot_mapping, v.to(flat.dtype))


def gather_kv(kv_cache: torch.Tensor, block_table: torch.Tensor, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first seq_len cached keys and values of one sequence: ([L, Hkv, D], [L, Hkv, D])."""
    block_size = kv_cache.shape[2]
    n_blocks = -(-seq_len // block_size)
    blocks = kv_cache[:, block_table[:n_blocks].long()]  # [2, n, bs, Hkv, D]
    flat = blocks.flatten(1, 2)[:, :seq_len]
    return flat[0], flat[1]


def causal_mask(query_len: int, seq_len: int, sliding_window: int | None, device: torch.device) -> torch.Tensor:
    """[Q, L] bool, True where query i (at position seq_len - query_len + i) may see key j."""
    q_pos = torch.arange(seq_len - query_len, seq_len, device=device)[:, None]
    k_pos = torch.arange(seq_len, device=device)[None, :]
    mask = k_pos <= q_pos
    if sliding_window is not None:
        mask &= (q_pos - k_pos) < sliding_window
    return mask


class TorchAttentionBackend(AttentionBackend):
    """A loop over sequences with SDPA per sequence; the fast paths are checked against it."""

    name = "torch"

    def forward(self, layer: AttentionLayerSpec, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                kv_cache: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        fp8 = is_fp8(kv_cache.dtype)
        write_kv(kv_cache, k, v, meta.slot_mapping, layer.k_scale, layer.v_scale)
        out = torch.empty_like(q)
        start = 0
        for i, (q_len, s_len) in enumerate(zip(meta.query_lens_cpu, meta.seq_lens_cpu)):
            keys, values = gather_kv(kv_cache, meta.block_tables[i], s_len)        # [L, Hkv, D]
            if fp8:   # dequantize the gathered blocks
                keys = dequantize_kv(keys, layer.k_scale, q.dtype)
                values = dequantize_kv(values, layer.v_scale, q.dtype)
            qi = q[start:start + q_len].transpose(0, 1)                              # [Hq, Q, D]
            ki = keys.transpose(0, 1).to(q.dtype)                                    # [Hkv, L, D]
            vi = values.transpose(0, 1).to(q.dtype)
            mask = causal_mask(q_len, s_len, layer.sliding_window, q.device)
            out[start:start + q_len] = self._attend(layer, qi, ki, vi, mask).transpose(0, 1)
            start += q_len
        return out

    @staticmethod
    def _attend(layer: AttentionLayerSpec, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        group = layer.num_heads // layer.num_kv_heads
        if group > 1:
            k = k.repeat_interleave(group, dim=0)
            v = v.repeat_interleave(group, dim=0)
        if layer.logits_soft_cap is None:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=layer.scale)
        # SDPA has no soft-capping: spell it out (Gemma 2 style tanh capping of the scores).
        scores = (q @ k.transpose(-1, -2)) * layer.scale
        scores = layer.logits_soft_cap * torch.tanh(scores / layer.logits_soft_cap)
        scores = scores.masked_fill(~mask, float("-inf"))
        return torch.softmax(scores.float(), dim=-1).to(q.dtype) @ v
