"""Prefill path for weight-only formats: dequantize the whole weight to x's dtype in one Triton pass, then cuBLAS.

Why: at M >= 256 rows the in-register 4-bit GEMMs (w4a16.py) run 2-3x slower than bf16 cuBLAS (INT8 weight-only,
w8.py, ~1.5x at 256 and ~3x at 8192), while this costs one read of the stored weight plus one 16-bit write and read
(~0.1 ms for Qwen3-8B's gate_up in 4 bits) on top of a GEMM that takes milliseconds at prefill sizes. vLLM's AWQ
layer makes the same switch at 256 tokens. The dense weight lives only for the call (the caching allocator reuses
its memory); it equals the reference's `format.weight(t)` rounded to x's dtype, so the output is the
dequantize-then-matmul fallback's up to cuBLAS's summation order.

Layouts as in w4a16.py: INT4 uint8 [N/2, K] (rows 2i, 2i+1 in a byte's low, high nibble), fp32 scale [N, K/group];
NVFP4 uint8 [N, K/2] (K elements 2j, 2j+1), e4m3 scale [N, K/16], fp32 weight_scale_2 (read at [0]); INT8 int8
[N, K], fp32 scale [N].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ember.quantization.kernels.tiles import e2m1, group_scaled, int4_f32

BLOCK_N, BLOCK_K = 32, 256      # a [32, 256]-element tile a program (a memory-bound copy: ~2.5 TB/s, session 6)


@triton.jit
def _dequant_int4_kernel(w_ptr, s_ptr, out_ptr, K, GROUP: tl.constexpr, BLOCK_N: tl.constexpr,
                         BLOCK_K: tl.constexpr):
    """Grid (N/2 / BN, K / BK): out[2i + r, k] = q_r[i, k] * scale[2i + r, k // GROUP] (r = 0: low nibble)."""
    offs_i = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    k0 = tl.program_id(1) * BLOCK_K
    cols = k0 + tl.arange(0, BLOCK_K)[None, :]
    row = 2 * offs_i.to(tl.int64)                                                           # [BN] output row 2i
    p = tl.load(w_ptr + offs_i[:, None].to(tl.int64) * K + cols).to(tl.int32)                # [BN, BK] bytes
    s_rows = s_ptr + row * (K // GROUP)
    lo = group_scaled(int4_f32(p), s_rows, k0, BLOCK_N, BLOCK_K, GROUP)
    hi = group_scaled(int4_f32(p >> 4), s_rows + K // GROUP, k0, BLOCK_N, BLOCK_K, GROUP)
    out = out_ptr + row[:, None] * K + cols
    tl.store(out, lo.to(out_ptr.dtype.element_ty))
    tl.store(out + K, hi.to(out_ptr.dtype.element_ty))


@triton.jit
def _dequant_nvfp4_kernel(w_ptr, s_ptr, s2_ptr, out_ptr, K, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Grid (N / BN, K/2 / BK) over bytes: out[n, 2j + h] = e2m1(nibble h of byte j) * scale[n, j // 8] *
    weight_scale_2 (the reference's order of fp32 products; e2m1's 2^-14 and this 2^14 are exact)."""
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    j0 = tl.program_id(1) * BLOCK_K
    rows_ = offs_n[:, None].to(tl.int64)
    p = tl.load(w_ptr + rows_ * (K // 2) + j0 + tl.arange(0, BLOCK_K)[None, :]).to(tl.int32)   # [BN, BK] bytes
    s_rows = s_ptr + offs_n.to(tl.int64) * (K // 16)
    s2 = tl.load(s2_ptr) * 16384.0
    lo = group_scaled(e2m1(p & 15), s_rows, j0, BLOCK_N, BLOCK_K, 8) * s2                   # 8 bytes a block
    hi = group_scaled(e2m1(p >> 4), s_rows, j0, BLOCK_N, BLOCK_K, 8) * s2
    both = tl.reshape(tl.join(lo, hi), (BLOCK_N, 2 * BLOCK_K))                             # [BN, 2 BK]
    cols = 2 * j0 + tl.arange(0, 2 * BLOCK_K)[None, :]
    tl.store(out_ptr + rows_ * K + cols, both.to(out_ptr.dtype.element_ty))


@triton.jit
def _dequant_int8_kernel(w_ptr, s_ptr, out_ptr, K, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Grid (N / BN, K / BK): out[n, k] = q[n, k] * scale[n] in fp32 (the reference's product), in out's dtype."""
    offs_n = (tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_K + tl.arange(0, BLOCK_K)[None, :]
    q = tl.load(w_ptr + offs_n[:, None] * K + cols).to(tl.float32)
    s = tl.load(s_ptr + offs_n)[:, None]
    tl.store(out_ptr + offs_n[:, None] * K + cols, (q * s).to(out_ptr.dtype.element_ty))


def _blocks(rows_: int, cols: int) -> tuple[int, int]:
    """The largest power-of-two tile (<= BLOCK_N x BLOCK_K) that divides [rows_, cols]: the kernels take no masks."""
    bn, bk = BLOCK_N, BLOCK_K
    while rows_ % bn:
        bn //= 2
    while cols % bk:
        bk //= 2
    return bn, bk


def int4_weight(weight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 [N/2, K], fp32 scale [N, K/group] -> [N, K] in `dtype`."""
    n2, k = weight.shape
    group = k // scale.shape[1]
    bn, bk = _blocks(n2, k)                      # (groups are powers of two: bk and the group divide each other)
    out = torch.empty(2 * n2, k, dtype=dtype, device=weight.device)
    _dequant_int4_kernel[(n2 // bn, k // bk)](weight, scale, out, k, GROUP=group, BLOCK_N=bn, BLOCK_K=bk)
    return out


def nvfp4_weight(weight: torch.Tensor, scale: torch.Tensor, scale_2: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 [N, K/2], e4m3 scale [N, K/16], fp32 scale_2 [>= 1] -> [N, K] in `dtype`."""
    n, k = weight.shape[0], 2 * weight.shape[1]
    if k != 16 * scale.shape[1]:
        raise ValueError(f"NVFP4 dequantization takes 16-element blocks, this weight has {k // scale.shape[1]}")
    bn, bk = _blocks(n, k // 2)
    out = torch.empty(n, k, dtype=dtype, device=weight.device)
    _dequant_nvfp4_kernel[(n // bn, k // 2 // bk)](weight, scale, scale_2, out, k, BLOCK_N=bn, BLOCK_K=bk)
    return out


def int8_weight(weight: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """int8 [N, K], fp32 scale [N] -> [N, K] in `dtype`."""
    n, k = weight.shape
    bn, bk = _blocks(n, k)
    out = torch.empty(n, k, dtype=dtype, device=weight.device)
    _dequant_int8_kernel[(n // bn, k // bk)](weight, scale, out, k, BLOCK_N=bn, BLOCK_K=bk)
    return out


def dense_weight(kind: str, layer, dtype: torch.dtype) -> torch.Tensor:
    """The layer's weight [N, K] in `dtype` (kind: "int4", "nvfp4" or "int8_wo", as dispatch.KINDS names them)."""
    if kind == "int4":
        return int4_weight(layer.weight, layer.weight_scale, dtype)
    if kind == "int8_wo":
        return int8_weight(layer.weight, layer.weight_scale, dtype)
    return nvfp4_weight(layer.weight, layer.weight_scale, layer.weight_scale_2, dtype)


def linear(kind: str, x: torch.Tensor, layer, pqs: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    """y = (x * pre_quant_scale) @ dequant(W)^T + b through a transient dense weight (`dense_weight`)."""
    w = dense_weight(kind, layer, x.dtype)
    if pqs is not None:
        x = x * pqs            # pqs is in x's dtype (QuantLinear.finalize_): the reference's rounding
    return F.linear(x, w, None if bias is None else bias.to(x.dtype))
