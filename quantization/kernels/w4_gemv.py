"""Weight-only 4-bit GEMV for M <= 4 (decode): INT4-AWQ and NVFP4 layouts, elementwise fp32 multiply-accumulate.

Why separate from w4a16.py's tl.dot kernels: at M = 1 the step is bound by bytes in flight, so many programs take
a few rows and a long K tile each. Tiles are 3-D [rows, groups, group] so each group's scale broadcasts over its
elements without reshaping registers.
Same layouts and semantics as w4a16.py (see there). Imported lazily.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ember.quantization.kernels.tiles import e2m1, int4_f32


@triton.jit
def _x3(x_ptrs, p_ptrs, HAS_PQS: tl.constexpr):
    """x [BM, NG, GS] as fp32, times pre_quant_scale rounded as the reference (x * s.to(x.dtype))."""
    x = tl.load(x_ptrs)
    if HAS_PQS:
        s = tl.load(p_ptrs).to(x.dtype).to(tl.float32)
        x = (x.to(tl.float32) * s[None]).to(x.dtype)
    return x.to(tl.float32)


@triton.jit
def _int4_ew_kernel(x_ptr, w_ptr, s_ptr, p_ptr, b_ptr, y_ptr, M, N, K, stride_xm, stride_wn, stride_sn, stride_ym,
                    GROUP: tl.constexpr, HAS_PQS: tl.constexpr, HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr,
                    BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Grid (cdiv(N/2, BN),): output rows 2i, 2i+1 of BN packed rows i, all M (<= BM) inputs."""
    GS: tl.constexpr = BLOCK_K if BLOCK_K < GROUP else GROUP
    NG: tl.constexpr = BLOCK_K // GS
    offs_i = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    ri = tl.minimum(offs_i, N // 2 - 1)
    rm = tl.minimum(offs_m, M - 1)
    offs_g = tl.arange(0, NG)
    kk = offs_g[:, None] * GS + tl.arange(0, GS)[None, :]                                   # [NG, GS]
    w_ptrs = w_ptr + ri[:, None, None].to(tl.int64) * stride_wn + kk[None]                 # [BN, NG, GS]
    x_ptrs = x_ptr + rm[:, None, None].to(tl.int64) * stride_xm + kk[None]                 # [BM, NG, GS]
    s_lo = s_ptr + (2 * ri)[:, None].to(tl.int64) * stride_sn + offs_g[None, :]            # [BN, NG]
    acc_lo = tl.zeros((BLOCK_N, BLOCK_M, NG, GS), dtype=tl.float32)
    acc_hi = tl.zeros((BLOCK_N, BLOCK_M, NG, GS), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        p = tl.load(w_ptrs).to(tl.int32)
        x = _x3(x_ptrs, p_ptr + k0 + kk, HAS_PQS)[None]                                     # [1, BM, NG, GS]
        g0 = k0 // GROUP
        lo = int4_f32(p) * tl.load(s_lo + g0)[:, :, None]
        hi = int4_f32(p >> 4) * tl.load(s_lo + stride_sn + g0)[:, :, None]
        acc_lo += lo[:, None] * x
        acc_hi += hi[:, None] * x
        w_ptrs += BLOCK_K
        x_ptrs += BLOCK_K
    y_lo = tl.sum(tl.sum(acc_lo, axis=3), axis=2)                                           # [BN, BM]
    y_hi = tl.sum(tl.sum(acc_hi, axis=3), axis=2)
    if HAS_BIAS:
        y_lo += tl.load(b_ptr + 2 * ri).to(tl.float32)[:, None]
        y_hi += tl.load(b_ptr + 2 * ri + 1).to(tl.float32)[:, None]
    mask = (offs_i[:, None] < N // 2) & (offs_m[None, :] < M)
    y_ptrs = y_ptr + offs_m[None, :] * stride_ym + 2 * offs_i[:, None]
    tl.store(y_ptrs, y_lo.to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(y_ptrs + 1, y_hi.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _nvfp4_ew_kernel(x_ptr, w_ptr, s_ptr, s2_ptr, p_ptr, b_ptr, y_ptr, M, N, K, stride_xm, stride_wn, stride_sn,
                     stride_ym, GROUP: tl.constexpr, HAS_PQS: tl.constexpr, HAS_BIAS: tl.constexpr,
                     BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Grid (cdiv(N, BN),). Tile [BN, NG blocks, GROUP/2 bytes]; low nibbles meet x's even columns, high the odd."""
    HB: tl.constexpr = GROUP // 2
    NG: tl.constexpr = BLOCK_K // GROUP
    offs_n = tl.program_id(0) * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    rn = tl.minimum(offs_n, N - 1)
    rm = tl.minimum(offs_m, M - 1)
    offs_g = tl.arange(0, NG)
    jj = offs_g[:, None] * HB + tl.arange(0, HB)[None, :]                                  # [NG, HB] bytes
    w_ptrs = w_ptr + rn[:, None, None].to(tl.int64) * stride_wn + jj[None]                 # [BN, NG, HB]
    x_ptrs = x_ptr + rm[:, None, None].to(tl.int64) * stride_xm + 2 * jj[None]             # even columns
    s_ptrs = s_ptr + rn[:, None].to(tl.int64) * stride_sn + offs_g[None, :]                # [BN, NG]
    acc = tl.zeros((BLOCK_N, BLOCK_M, NG, HB), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        p = tl.load(w_ptrs).to(tl.int32)
        s = tl.load(s_ptrs + k0 // GROUP).to(tl.float32)[:, :, None]
        x_even = _x3(x_ptrs, p_ptr + k0 + 2 * jj, HAS_PQS)[None]
        x_odd = _x3(x_ptrs + 1, p_ptr + k0 + 2 * jj + 1, HAS_PQS)[None]
        acc += (e2m1(p & 15) * s)[:, None] * x_even + (e2m1(p >> 4) * s)[:, None] * x_odd
        w_ptrs += BLOCK_K // 2
        x_ptrs += BLOCK_K
    y = tl.sum(tl.sum(acc, axis=3), axis=2) * (tl.load(s2_ptr) * 16384.0)                  # 2^14: tiles.e2m1
    if HAS_BIAS:
        y += tl.load(b_ptr + rn).to(tl.float32)[:, None]
    mask = (offs_n[:, None] < N) & (offs_m[None, :] < M)
    tl.store(y_ptr + offs_m[None, :] * stride_ym + offs_n[:, None], y.to(y_ptr.dtype.element_ty), mask=mask)


def _rows(x: torch.Tensor) -> torch.Tensor:
    x2 = x.reshape(-1, x.shape[-1])
    return x2 if x2.stride(-1) == 1 else x2.contiguous()


def int4_gemv(x, weight, scale, pqs, bias, cfg) -> torch.Tensor:
    """As w4a16.int4_linear, M <= cfg.block_m; block_k a multiple of the group or a divisor of it."""
    x2, n, k = _rows(x), 2 * weight.shape[0], x.shape[-1]
    m, group = x2.shape[0], k // scale.shape[1]
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    _int4_ew_kernel[(triton.cdiv(n // 2, cfg.block_n),)](
        x2, weight, scale, pqs if pqs is not None else scale, bias if bias is not None else scale, y, m, n, k,
        x2.stride(0), weight.stride(0), scale.stride(0), y.stride(0), GROUP=group, HAS_PQS=pqs is not None,
        HAS_BIAS=bias is not None, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k,
        num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return y.view(*x.shape[:-1], n)


def nvfp4_gemv(x, weight, scale, scale_2, pqs, bias, cfg) -> torch.Tensor:
    """As w4a16.nvfp4_linear, M <= cfg.block_m; block_k a multiple of the group (16)."""
    x2, n, k = _rows(x), weight.shape[0], x.shape[-1]
    m, group = x2.shape[0], k // scale.shape[1]
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    _nvfp4_ew_kernel[(triton.cdiv(n, cfg.block_n),)](
        x2, weight, scale, scale_2, pqs if pqs is not None else scale_2, bias if bias is not None else scale_2, y,
        m, n, k, x2.stride(0), weight.stride(0), scale.stride(0), y.stride(0), GROUP=group,
        HAS_PQS=pqs is not None, HAS_BIAS=bias is not None, BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n,
        BLOCK_K=cfg.block_k, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return y.view(*x.shape[:-1], n)
