"""Weight-only 4-bit GEMM (bf16/fp16 activations, fp32 accumulate): INT4-AWQ and NVFP4 layouts, decode to prefill.

y[M, N] = (x * pre_quant_scale) @ dequant(W)^T (+ b). Each weight tile is dequantized in registers and never
written out, so a decode step reads 4.5 bits a weight instead of 16. DOT: tl.dot with the dequantized weight as the
A operand (acc [BLOCK_N, BLOCK_M] = W x^T, BLOCK_M >= 16); else elementwise 2-D tiles (config kind "ew2"; the
decode GEMV in packed half2 is w4_gemv.py). SPLIT_K > 1 splits K over the grid's third axis; the splits meet in
splitk.store_tile (why: at M = 16-256 the N tiles alone leave most of the 132 SMs idle). INT4 takes BLOCK_K <= group (one scale
per row per K step) and x in bf16 or fp16. Imported lazily.

Layouts (ember.quantization.numerics): INT4 uint8 [N/2, K] two OUTPUT rows a byte (2i low nibble, two's complement),
fp32 scale [N, K/group]; NVFP4 uint8 [N, K/2] two K elements a byte (2j low nibble, E2M1 sign-magnitude), e4m3
block scales [N, K/16], fp32 weight_scale_2 (read at [0]: QuantLinear.finalize_ unified it over shards).
NVFP4 runs weight-only here (Hopper has no FP4 tensor cores; vLLM's FP4-Marlin does the same).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ember.quantization.kernels import splitk
from ember.quantization.kernels.splitk import store_tile
from ember.quantization.kernels.tiles import (accumulate, e2m1, finish, group_scaled, int4_f32,
                                              int4_offset16, load_x, rows)


@triton.jit
def _int4_kernel(x_ptr, w_ptr, s_ptr, p_ptr, b_ptr, y_ptr, ws_ptr, cnt_ptr, M, N, K, stride_xm, stride_wn, stride_sn, stride_ym,
                 GROUP: tl.constexpr, HAS_PQS: tl.constexpr, HAS_BIAS: tl.constexpr, IS_BF16: tl.constexpr,
                 DOT: tl.constexpr, SPLIT_K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                 BLOCK_K: tl.constexpr):
    """Grid (cdiv(M, BM), cdiv(N/2, BN), SPLIT_K): output rows 2i (low nibbles) and 2i+1 (high) of BN packed rows
    i over K range pid_k * K / SPLIT_K ..."""
    pid_m, pid_n, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    k_len = K // SPLIT_K
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_i = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = pid_k * k_len + tl.arange(0, BLOCK_K)
    rm = tl.minimum(offs_m, M - 1)                      # clamp instead of masking: loads stay unmasked
    ri = tl.minimum(offs_i, N // 2 - 1)
    w_ptrs = w_ptr + ri[:, None].to(tl.int64) * stride_wn + offs_k[None, :]            # [BN, BK] uint8
    x_ptrs = x_ptr + rm[:, None].to(tl.int64) * stride_xm + offs_k[None, :]            # [BM, BK]
    s_lo = s_ptr + (2 * ri).to(tl.int64) * stride_sn                                    # [BN]
    s_hi = s_lo + stride_sn
    if DOT:
        acc_lo = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
        acc_hi = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    else:
        acc_lo = tl.zeros((BLOCK_N, BLOCK_M, BLOCK_K), dtype=tl.float32)
        acc_hi = tl.zeros((BLOCK_N, BLOCK_M, BLOCK_K), dtype=tl.float32)
    if IS_BF16:
        OFFSET = 136.0
    else:
        OFFSET = 1032.0
    for k0 in range(pid_k * k_len, (pid_k + 1) * k_len, BLOCK_K):
        p = tl.load(w_ptrs).to(tl.int32)
        x = load_x(x_ptrs, p_ptr, k0, BLOCK_K, HAS_PQS)
        s_l = tl.load(s_lo + k0 // GROUP)[:, None]
        s_h = tl.load(s_hi + k0 // GROUP)[:, None]
        if DOT:
            # why: the weight enters tl.dot as exact 16-bit floats OFFSET + int4 built from bits (no conversions);
            # the offset comes back out through sum(x), the group scale multiplies the partial product
            x_off = OFFSET * tl.sum(x.to(tl.float32), axis=1)[None, :]                    # [1, BM]
            acc_lo += (tl.dot(int4_offset16(p, IS_BF16), tl.trans(x)) - x_off) * s_l
            acc_hi += (tl.dot(int4_offset16(p >> 4, IS_BF16), tl.trans(x)) - x_off) * s_h
        else:
            acc_lo = accumulate(acc_lo, int4_f32(p) * s_l, x, False)
            acc_hi = accumulate(acc_hi, int4_f32(p >> 4) * s_h, x, False)
        w_ptrs += BLOCK_K
        x_ptrs += BLOCK_K
    y_lo, y_hi = finish(acc_lo, DOT), finish(acc_hi, DOT)                                # [BN, BM]
    b_lo = tl.zeros((BLOCK_N, 1), dtype=tl.float32)
    b_hi = tl.zeros((BLOCK_N, 1), dtype=tl.float32)
    if HAS_BIAS:
        b_lo += tl.load(b_ptr + 2 * ri).to(tl.float32)[:, None]
        b_hi += tl.load(b_ptr + 2 * ri + 1).to(tl.float32)[:, None]
    mask = (offs_i[:, None] < N // 2) & (offs_m[None, :] < M)
    y_ptrs = y_ptr + offs_m[None, :].to(tl.int64) * stride_ym + 2 * offs_i[:, None]
    tile = 2 * (pid_m * tl.num_programs(1) + pid_n)                                         # lo, hi: 2 tiles
    store_tile(y_lo, b_lo, y_ptrs, mask, ws_ptr, cnt_ptr, tile, pid_k, SPLIT_K, BLOCK_N, BLOCK_M)
    store_tile(y_hi, b_hi, y_ptrs + 1, mask, ws_ptr, cnt_ptr, tile + 1, pid_k, SPLIT_K, BLOCK_N, BLOCK_M)


@triton.jit
def _nvfp4_kernel(x_ptr, w_ptr, s_ptr, s2_ptr, p_ptr, b_ptr, y_ptr, ws_ptr, cnt_ptr, M, N, K, stride_xm, stride_wn, stride_sn,
                  stride_ym, GROUP: tl.constexpr, HAS_PQS: tl.constexpr, HAS_BIAS: tl.constexpr, DOT: tl.constexpr,
                  SPLIT_K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Grid (cdiv(M, BM), cdiv(N, BN), SPLIT_K). Low nibbles hold the even K elements, high the odd: rather than
    interleaving the weight, x is split into its even and odd columns (the sum over K does not care)."""
    HALF: tl.constexpr = BLOCK_K // 2
    pid_m, pid_n, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    k_len = K // SPLIT_K
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rm = tl.minimum(offs_m, M - 1)
    rn = tl.minimum(offs_n, N - 1)
    w_ptrs = w_ptr + rn[:, None].to(tl.int64) * stride_wn + pid_k * (k_len // 2) + tl.arange(0, HALF)[None, :]
    x_ptrs = x_ptr + rm[:, None].to(tl.int64) * stride_xm + pid_k * k_len + tl.arange(0, BLOCK_K)[None, :]
    s_ptrs = s_ptr + rn.to(tl.int64) * stride_sn
    if DOT:
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_N, BLOCK_M, HALF), dtype=tl.float32)
    for k0 in range(pid_k * k_len, (pid_k + 1) * k_len, BLOCK_K):
        p = tl.load(w_ptrs).to(tl.int32)
        x = load_x(x_ptrs, p_ptr, k0, BLOCK_K, HAS_PQS)
        x_even, x_odd = tl.split(tl.reshape(x, (BLOCK_M, HALF, 2)))
        # a byte j of the tile covers elements 2j, 2j+1: its block scale is j // (GROUP / 2) in byte units
        lo = group_scaled(e2m1(p & 15), s_ptrs, k0 // 2, BLOCK_N, HALF, GROUP // 2)
        hi = group_scaled(e2m1(p >> 4), s_ptrs, k0 // 2, BLOCK_N, HALF, GROUP // 2)
        acc = accumulate(acc, lo, x_even, DOT)
        acc = accumulate(acc, hi, x_odd, DOT)
        w_ptrs += HALF
        x_ptrs += BLOCK_K
    y = finish(acc, DOT) * (tl.load(s2_ptr) * 16384.0)   # 2^14: see tiles.e2m1
    bias = tl.zeros((BLOCK_N, 1), dtype=tl.float32)
    if HAS_BIAS:
        bias += tl.load(b_ptr + rn).to(tl.float32)[:, None]
    mask = (offs_n[:, None] < N) & (offs_m[None, :] < M)
    y_ptrs = y_ptr + offs_m[None, :].to(tl.int64) * stride_ym + offs_n[:, None]
    store_tile(y, bias, y_ptrs, mask, ws_ptr, cnt_ptr, pid_m * tl.num_programs(1) + pid_n, pid_k, SPLIT_K,
               BLOCK_N, BLOCK_M)


def split_grid(m: int, n_tiles: int, tiles_per_n: int, k: int, block_k: int, cfg) -> tuple[int, int, int]:
    """(M tiles, N tiles, split): the split cut to what K and the split-K workspace take."""
    m_tiles = triton.cdiv(m, cfg.block_m)
    split = splitk.max_split(m_tiles * n_tiles * tiles_per_n, cfg.block_m * cfg.block_n, cfg.split_k)
    while split > 1 and k % (split * block_k):
        split //= 2
    return m_tiles, n_tiles, split


def _meta(cfg, split: int) -> dict:
    return {"DOT": cfg.kind == "dot", "SPLIT_K": split, "BLOCK_M": cfg.block_m, "BLOCK_N": cfg.block_n,
            "num_warps": cfg.num_warps, "num_stages": cfg.num_stages}


def int4_linear(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, pqs: torch.Tensor | None,
                bias: torch.Tensor | None, cfg) -> torch.Tensor:
    """x [..., K] -> [..., N]; weight uint8 [N/2, K], scale fp32 [N, K/group]; cfg: dispatch.Config (block_k is
    capped at the group)."""
    x2, n, k = rows(x), 2 * weight.shape[0], x.shape[-1]
    m, group = x2.shape[0], k // scale.shape[1]
    block_k = min(cfg.block_k, group)
    grid = split_grid(m, triton.cdiv(n // 2, cfg.block_n), 2, k, block_k, cfg)
    ws, cnt = splitk.workspace(x.device)
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    _int4_kernel[grid](x2, weight, scale, pqs if pqs is not None else scale, bias if bias is not None else scale, y,
                       ws, cnt, m, n, k, x2.stride(0), weight.stride(0), scale.stride(0), y.stride(0), GROUP=group,
                       HAS_PQS=pqs is not None, HAS_BIAS=bias is not None, IS_BF16=x.dtype == torch.bfloat16,
                       BLOCK_K=block_k, **_meta(cfg, grid[2]))
    return y.view(*x.shape[:-1], n)


def nvfp4_linear(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, scale_2: torch.Tensor,
                 pqs: torch.Tensor | None, bias: torch.Tensor | None, cfg) -> torch.Tensor:
    """x [..., K] -> [..., N]; weight uint8 [N, K/2], scale e4m3 [N, K/16], scale_2 fp32 [>= 1] (uses [0])."""
    x2, n, k = rows(x), weight.shape[0], x.shape[-1]
    m, group = x2.shape[0], k // scale.shape[1]
    grid = split_grid(m, triton.cdiv(n, cfg.block_n), 1, k, cfg.block_k, cfg)
    ws, cnt = splitk.workspace(x.device)
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    _nvfp4_kernel[grid](x2, weight, scale, scale_2, pqs if pqs is not None else scale_2,
                        bias if bias is not None else scale_2, y, ws, cnt, m, n, k, x2.stride(0), weight.stride(0),
                        scale.stride(0), y.stride(0), GROUP=group, HAS_PQS=pqs is not None, HAS_BIAS=bias is not None,
                        BLOCK_K=cfg.block_k, **_meta(cfg, grid[2]))
    return y.view(*x.shape[:-1], n)
