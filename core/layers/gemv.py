"""Skinny GEMM (M <= 8 rows) in Triton for decode: y[M, N] = x[M, K] @ W[N, K]^T (+ b), W as nn.Linear stores it.

Why: at batch 1 a decode step is ~5.7 ms of GEMVs against a 5.05 ms bandwidth floor (docs/performance.md); cuBLAS
runs o_proj at ~1.6 TB/s and qkv / down with split-K plus a separate reduce kernel. These kernels read each weight
once with 16-byte loads and no split-K. They run only where `TABLE` says so: per (N, K, M-bucket), decided by
measurement against F.linear on the GPU (benchmarks/decode_b1.py); everything else (other shapes, M > 8, CPU,
fp32, quantized modules, which never reach this) stays on F.linear. EMBER_GEMV=0 turns it off.

Two kernels, both accumulating in fp32 and rounding once to the output dtype (bias added in fp32 first):
- "ew": elementwise multiply-accumulate over a [BLOCK_M, BLOCK_N, BLOCK_K] register tile, one reduction at the end
  (the classic GEMV; best at M = 1);
- "dot": tl.dot on a [16, BLOCK_K] x [BLOCK_K, BLOCK_N] tile (rows past M clamped, not stored), software-pipelined
  loads: tensor cores for M = 2..8.
Imported lazily (imports triton) by `linear()` on the first CUDA call.
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch
import torch.nn.functional as F

ENABLED = os.environ.get("EMBER_GEMV", "1") != "0"
GATED = os.environ.get("EMBER_GEMV_GATED", "1") != "0"   # the act-and-mul prologue (GATED_TABLE); A/B switch
MAX_M = 8


class Config(NamedTuple):
    kind: str          # "ew" or "dot"
    block_n: int
    block_k: int
    num_warps: int
    num_stages: int = 1


# (N, K, M bucket) -> Config, bf16/fp16 weights: the entries that beat F.linear by >= 2% in
# `benchmarks/decode_b1.py` on an H100 80GB HBM3 (2026-11-24, torch 2.11, triton 3.6; docs/performance.md has the
# numbers). Qwen3-8B decode shapes only; any shape or bucket absent here runs F.linear (cuBLAS). Not chosen there:
# qkv M=2/4/8, o_proj M=4, down M=4/8 (cuBLAS as fast or faster).
TABLE: dict[tuple[int, int, int], Config] = {
    (6144, 4096, 1): Config('ew', 2, 1024, 4, 1),               # qkv
    (4096, 4096, 1): Config('ew', 2, 1024, 4, 1),               # o_proj
    (4096, 4096, 2): Config('ew', 4, 512, 4, 1),                # o_proj
    (4096, 4096, 8): Config('dot', 32, 256, 4, 4),              # o_proj
    (24576, 4096, 1): Config('ew', 2, 1024, 4, 1),              # gate_up
    (24576, 4096, 2): Config('ew', 4, 512, 4, 1),               # gate_up
    (24576, 4096, 4): Config('dot', 64, 128, 4, 4),             # gate_up
    (24576, 4096, 8): Config('dot', 64, 128, 4, 4),             # gate_up
    (4096, 12288, 1): Config('ew', 8, 1024, 4, 1),              # down
    (4096, 12288, 2): Config('ew', 4, 1024, 4, 1),              # down
    (151936, 4096, 1): Config('ew', 2, 1024, 4, 1),             # lm_head
    (151936, 4096, 2): Config('ew', 4, 512, 4, 1),              # lm_head
    (151936, 4096, 4): Config('dot', 64, 128, 4, 4),            # lm_head
    (151936, 4096, 8): Config('dot', 32, 256, 4, 4),            # lm_head
}

# (N, K, M bucket) -> Config for the gated prologue (y = (act(gate) * up) @ W^T in one launch: the down_proj of a
# gated MLP at decode, saving the act-and-mul kernel and its output round trip). Same rule as TABLE, measured by
# `benchmarks/decode_b1_ab.py` on the H100 (2026-11-24): M=1 36.6 us vs 38.0 us for act-and-mul + skinny GEMM,
# bitwise-equal output; M=2 best 39.6 vs 39.9 us (< 2%: not used).
GATED_TABLE: dict[tuple[int, int, int], Config] = {
    (4096, 12288, 1): Config('ew', 8, 1024, 4, 1),              # down
}

_mod = None


def m_bucket(m: int) -> int:
    return 1 if m <= 1 else 2 if m <= 2 else 4 if m <= 4 else 8


def _table_key(x: torch.Tensor, weight: torch.Tensor, width: int) -> tuple[int, int, int] | None:
    """(N, K, M bucket) for x [..., width] (width K, or 2K for a [gate | up] input) against weight [N, K] on the
    kernels' terms (enabled, CUDA, matching 16-bit dtypes, 1..MAX_M rows), else None."""
    if not (ENABLED and x.is_cuda and weight.dim() == 2 and x.dtype == weight.dtype
            and x.dtype in (torch.bfloat16, torch.float16) and x.shape[-1] == width):
        return None
    m = x.numel() // width if width else 0
    if m == 0 or m > MAX_M:
        return None
    return weight.shape[0], weight.shape[1], m_bucket(m)


def lookup(x: torch.Tensor, weight: torch.Tensor) -> Config | None:
    """The kernel config for this call, or None for F.linear."""
    key = _table_key(x, weight, weight.shape[-1])
    return None if key is None else TABLE.get(key)


def lookup_gated(h: torch.Tensor, weight: torch.Tensor) -> Config | None:
    """The gated-prologue config for h [M, 2K] and weight [N, K], or None (run act-and-mul, then `linear`)."""
    key = _table_key(h, weight, 2 * weight.shape[-1]) if GATED else None
    return None if key is None else GATED_TABLE.get(key)


def _kernels():
    """ember.layers.gemv_kernels, imported on the first CUDA call (it imports triton)."""
    global _mod
    if _mod is None:
        from ember.layers import gemv_kernels
        _mod = gemv_kernels
    return _mod


def gated_linear(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, act: str, cfg: Config,
                 out: torch.Tensor | None = None) -> torch.Tensor:
    """(act(gate) * up) @ W^T (+ b) for h [..., 2K] = [gate | up] in one 'ew' launch (act: "silu" / "gelu_tanh")."""
    return _kernels().launch(h, weight, bias, cfg, out, act=act)


def linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear, through the skinny-GEMM kernel where the table has an entry for this shape and M."""
    cfg = lookup(x, weight)
    if cfg is None:
        return F.linear(x, weight, bias)
    return skinny_linear(x, weight, bias, cfg)


def skinny_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, cfg: Config,
                  out: torch.Tensor | None = None) -> torch.Tensor:
    """Run the kernel whatever the table says (tests, benchmarks). x [..., K] with M <= 8 rows (<= 16 for dot)."""
    return _kernels().launch(x, weight, bias, cfg, out)
