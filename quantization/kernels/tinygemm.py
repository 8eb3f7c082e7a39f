"""INT4-AWQ at decode sizes through PyTorch's own int4 kernel (`torch._weight_int4pack_mm`, "tinygemm", CUDA, bf16).

Why: ember's Triton 4-bit GEMV reads the weight at ~0.8 TB/s on the H100 (docs/performance.md), no faster than bf16;
tinygemm (the kernel behind gpt-fast's and torchao's int4 weight-only path, shipped in aten) is tuned for exactly
this. It wants its own tiled layout: `prepare` repacks a layer once after loading (QuantLinear.finalize_) and keeps
the checkpoint tensors as they are (export and the CPU fallback read those).

Layout mapping: ember/ModelOpt INT4 stores q in -8..7 (two output rows per byte, `numerics.int4`) with w = q * scale;
tinygemm takes unsigned nibbles u = q + 8, two consecutive K elements per byte (even k high), and per group a
(scale, zero) pair with w = (u - 8) * scale + zero: zero = 0. Scales go to bf16 (tinygemm's dtype).
`EMBER_INT4_TINYGEMM=0` keeps the Triton kernels (A/B).
"""

from __future__ import annotations

import os

import torch

from ember.quantization.numerics import int4

ENABLED = os.environ.get("EMBER_INT4_TINYGEMM", "1") != "0"
INNER_K_TILES = 8      # K must be a multiple of INNER_K_TILES * 16
# Largest M sent here: benchmarks/int4_paths.py on the H100 (2026-11-24), Qwen3-8B shapes: tinygemm beats the Triton
# kernels and bf16 at M = 1 (qkv 10.5 vs 23.6 / 21.5 us, gate_up 29.0 vs 59.3 / 72.5) and M = 4, loses at M = 16.
MAX_M = 4
GROUPS = (32, 64, 128, 256)


def supports(layer) -> bool:
    """W4A16_AWQ on CUDA in bf16 with shapes tinygemm takes."""
    if not (ENABLED and layer.weight.is_cuda and layer.format.quant_algo == "W4A16_AWQ"
            and layer.compute_dtype == torch.bfloat16):
        return False
    n, k = layer.out_features, layer.in_features
    return (k // layer.weight_scale.shape[1] in GROUPS and n % 8 == 0 and k % (INNER_K_TILES * 16) == 0
            and hasattr(torch.ops.aten, "_weight_int4pack_mm"))


@torch.no_grad()
def prepare(layer) -> tuple[torch.Tensor, torch.Tensor, int]:
    """(packed weight in tinygemm's layout, scale_and_zeros bf16 [G, N, 2], group) for one layer."""
    q = int4.unpack(layer.weight).to(torch.int32) + 8                             # [N, K] in 0..15
    nibbles = ((q[:, 0::2] << 4) | q[:, 1::2]).to(torch.uint8).contiguous()       # [N, K/2]
    packed = torch.ops.aten._convert_weight_to_int4pack(nibbles, INNER_K_TILES)
    scale = layer.weight_scale.float().t()                                        # [G, N]
    scale_zeros = torch.stack([scale, torch.zeros_like(scale)], dim=-1).to(torch.bfloat16).contiguous()
    return packed, scale_zeros, layer.in_features // layer.weight_scale.shape[1]


def linear(x: torch.Tensor, packed: torch.Tensor, scale_zeros: torch.Tensor, group: int,
           pqs: torch.Tensor | None, bias: torch.Tensor | None, n: int) -> torch.Tensor:
    """x [..., K] bf16 -> [..., N]; pre_quant_scale multiplies x first (rounded to x's dtype, as the reference)."""
    x2 = x.reshape(-1, x.shape[-1])
    if pqs is not None:
        x2 = x2 * pqs
    y = torch.ops.aten._weight_int4pack_mm(x2.contiguous(), packed, group, scale_zeros)  # [M, N]
    if bias is not None:
        y = y + bias
    return y.view(*x.shape[:-1], n)
