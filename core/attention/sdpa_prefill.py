"""Fresh-prompt prefill through PyTorch's SDPA (cuDNN attention on Hopper), where it beats ember's paged kernel.

A prompt with no cached prefix attends only to its own new keys, which the step holds contiguously beside q, so
no block table is needed and `F.scaled_dot_product_attention` can run it: consecutive prompts of one length form
one [g, n, H, D] slab and one call (a view, no copy). Why: on the H100 (Qwen3-8B heads, 8 x 2048, bf16) SDPA picks
cuDNN's kernel, ~500 us a layer against ~1,000 us for the paged Triton kernel and for FlashAttention-2 (SDPA's
flash backend and `torch.nn.attention.varlen`, measured in the same run: benchmarks/sdpa_prefill_ab.py,
docs/performance.md). The paged kernel stays for decode, cached prefixes (chunked prefill, prefix reuse), fp8
caches (attention must see the cached e4m3 values, as the decode steps do), sliding windows and soft caps (SDPA
has neither), and CUDA-graph capture. EMBER_SDPA_PREFILL=0 keeps every prefill on Triton (A/B).
"""

from __future__ import annotations

import os

import torch
import torch.nn.functional as F

from ember.attention.backend import AttentionLayerSpec
from ember.attention.metadata import AttentionMetadata

ENABLED = os.environ.get("EMBER_SDPA_PREFILL", "1") != "0"
# Steps whose prompts average fewer new tokens stay on the Triton kernel (one launch for the whole step there;
# here one launch per run of equal lengths).
MIN_TOKENS_PER_SEQ = 256


def fresh_prompts(meta: AttentionMetadata) -> bool:
    """Every sequence of the step is a whole prompt with no cached prefix, long enough on average to route."""
    lens = meta.query_lens_cpu
    return (meta.max_query_len > 1 and lens == meta.seq_lens_cpu
            and sum(lens) >= MIN_TOKENS_PER_SEQ * len(lens))


def eligible(layer: AttentionLayerSpec, q: torch.Tensor, fp8_cache: bool, meta: AttentionMetadata) -> bool:
    """True where `attend` computes this layer's prefill (and is the faster path)."""
    return (ENABLED and q.is_cuda and q.dtype in (torch.bfloat16, torch.float16) and not fp8_cache
            and layer.sliding_window is None and layer.logits_soft_cap is None
            and not torch.cuda.is_current_stream_capturing() and fresh_prompts(meta))


def attend(layer: AttentionLayerSpec, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor,
           meta: AttentionMetadata) -> torch.Tensor:
    """Causal attention of each prompt over its own keys: q [T, Hq, D], k / v [T, Hkv, D] -> [T, Hq, D]."""
    gqa = layer.num_heads != layer.num_kv_heads
    lens = meta.query_lens_cpu
    out = None
    start = i = 0
    while i < len(lens):
        n, j = lens[i], i
        while j < len(lens) and lens[j] == n:
            j += 1
        stop = start + (j - i) * n
        qs, ks, vs = (x[start:stop].unflatten(0, (j - i, n)).transpose(1, 2) for x in (q, k, v))  # [g, H, n, D]
        o = F.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=layer.scale, enable_gqa=gqa)
        o = o.transpose(1, 2).flatten(0, 1)                                                      # [g * n, Hq, D]
        if start == 0 and stop == q.shape[0]:
            return o                      # one run: the whole step
        if out is None:
            out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        out[start:stop] = o
        start, i = stop, j
    return out
