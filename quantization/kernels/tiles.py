"""Helpers shared by the quantized GEMM kernels: activation tile loads, group scales, the accumulate step (Triton),
`rows`, the [M, K] view of x every launcher passes them, and the TMA descriptors of x and packed weights."""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor


def rows(x: torch.Tensor) -> torch.Tensor:
    """x [..., K] as [M, K] rows with unit stride along K (a copy only where it is needed)."""
    x2 = x.reshape(-1, x.shape[-1])
    return x2 if x2.stride(-1) == 1 else x2.contiguous()


def _tma_aligned(t: torch.Tensor) -> bool:
    """TMA takes a 2-D tensor whose base and row stride are multiples of 16 bytes (a single row's stride is unused)."""
    return t.data_ptr() % 16 == 0 and (t.shape[0] <= 1 or t.stride(0) * t.element_size() % 16 == 0)


def tma_rows(x: torch.Tensor, block: list[int]) -> TensorDescriptor:
    """A TMA descriptor loading `block` tiles of x [..., K] as `rows(x)` [M, K] (rows past M read as zeros), copied
    first where TMA cannot take the view; the descriptor's `base` keeps the tensor it reads."""
    x2 = rows(x)
    if not _tma_aligned(x2):
        x2 = x2.contiguous()
    row_stride = x2.stride(0) if x2.shape[0] > 1 else x2.shape[1]      # a [1, K] view's stride(0) is arbitrary
    return TensorDescriptor(x2, list(x2.shape), [row_stride, 1], block)


def tma_weight(w: torch.Tensor, block: list[int]) -> TensorDescriptor:
    """A TMA descriptor over a packed weight [rows, bytes] (dispatch.lookup keeps shapes TMA cannot take away)."""
    if not _tma_aligned(w) or w.stride(1) != 1:
        raise ValueError(f"packed weight {tuple(w.shape)} (strides {w.stride()}) needs a 16-byte aligned base and "
                         "row stride for TMA; dispatch.lookup sends such shapes to the dequantize fallback")
    return TensorDescriptor(w, list(w.shape), [w.stride(0), 1], block)


@triton.jit
def load_x(x_ptrs, p_ptr, k0, BLOCK_K: tl.constexpr, HAS_PQS: tl.constexpr):
    """x tile [BM, BK] in its own dtype, times pre_quant_scale[k0:k0+BK] (`scale_x`)."""
    return scale_x(tl.load(x_ptrs), p_ptr, k0, BLOCK_K, HAS_PQS)


@triton.jit
def scale_x(x, p_ptr, k0, BLOCK_K: tl.constexpr, HAS_PQS: tl.constexpr):
    """x tile [BM, BK] times pre_quant_scale[k0:k0+BK], rounded as the reference (x * s.to(x))."""
    if HAS_PQS:
        s = tl.load(p_ptr + k0 + tl.arange(0, BLOCK_K)).to(x.dtype).to(tl.float32)
        x = (x.to(tl.float32) * s[None, :]).to(x.dtype)
    return x


@triton.jit
def group_scaled(q, s_ptrs, k0, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GROUP: tl.constexpr):
    """q [BN, BK] fp32 (columns k0.. of the stored weight) times its per-(row, group) scale; s_ptrs [BN] point at
    each row's first scale. BK <= GROUP: one scale per row (GROUP % BK == 0); else BK // GROUP per row."""
    if BLOCK_K <= GROUP:
        s = tl.load(s_ptrs + k0 // GROUP).to(tl.float32)                                   # [BN]
        return q * s[:, None]
    else:
        NG: tl.constexpr = BLOCK_K // GROUP
        s = tl.load(s_ptrs[:, None] + (k0 // GROUP + tl.arange(0, NG))[None, :]).to(tl.float32)  # [BN, NG]
        return tl.reshape(tl.reshape(q, (BLOCK_N, NG, GROUP)) * s[:, :, None], (BLOCK_N, BLOCK_K))


@triton.jit
def accumulate(acc, w, x, DOT: tl.constexpr):
    """acc += W x^T over one K tile: w [BN, BK] fp32, x [BM, BK]. DOT: acc [BN, BM] on tensor cores with the
    weight (rounded to x's dtype, as the reference matmul sees it) as the A operand; else acc [BN, BM, BK] fp32
    multiply-adds, reduced once at the end (`finish`)."""
    if DOT:
        return tl.dot(w.to(x.dtype), tl.trans(x), acc)
    else:
        return acc + w[:, None, :] * x.to(tl.float32)[None, :, :]


@triton.jit
def finish(acc, DOT: tl.constexpr):
    """The accumulator as y^T [BN, BM] fp32."""
    if DOT:
        return acc
    else:
        return tl.sum(acc, axis=2)


@triton.jit
def e2m1(code):
    """int32 E2M1 codes 0..15 -> fp32 value * 2^-14: the code's bits placed in an fp16 (sign, 2-bit exponent,
    1-bit mantissa; code 1 lands on the fp16 subnormal 2^-15). Exact; the caller folds 2^14 into a scale."""
    bits = ((code & 8) << 12) | ((code & 7) << 9)
    return bits.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def int4_f32(p):
    """The low nibble of int32 `p` (two's complement int4) as fp32, without an int->float conversion (16/clk/SM on
    Hopper): 0x4B000000 | (nibble ^ 8) is the float 2^23 + nibble + 8; one LOP3 and one FADD."""
    return ((p ^ 0x4B000008) & 0x4B00000F).to(tl.float32, bitcast=True) - 8388616.0


@triton.jit
def int8_f32(w):
    """int8 `w` as fp32 the same way: 0x4B000000 | (byte ^ 0x80) is 2^23 + w + 128."""
    return ((w.to(tl.int32) & 0xFF) ^ 0x4B000080).to(tl.float32, bitcast=True) - 8388736.0
