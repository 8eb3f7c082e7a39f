"""Weight-only 4-bit GEMM (bf16/fp16 activations, fp32 accumulate): INT4-AWQ and NVFP4 layouts, decode to prefill.

y[M, N] = (x * pre_quant_scale) @ dequant(W)^T (+ b). Each weight tile is dequantized in registers and never
written out, so a decode step reads 4.5 bits a weight instead of 16. DOT: tl.dot with the dequantized weight as the
A operand (acc [BLOCK_N, BLOCK_M] = W x^T, BLOCK_M >= 16; Triton keeps a computed A operand in registers for
Hopper's wgmma); else elementwise 2-D tiles (config kind "ew2"; the decode GEMV in packed half2 is w4_gemv.py).
SPLIT_K > 1 splits K over the grid's third axis; the splits meet in splitk.store_tile (why: at M = 16-256 the N
tiles alone leave most of the 132 SMs idle). INT4 takes BLOCK_K <= group (one scale per row per K step), x in bf16
or fp16. Both load their x and weight tiles by TMA descriptors (tiles.tma_rows / tma_weight): per-element pointer
tensors had taken the tl.dot configs to 255 registers and spills (session 8). Imported lazily.

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
from ember.quantization.kernels.tiles import (accumulate, e2m1, finish, group_scaled, int4_f32, scale_x,
                                              tma_rows, tma_weight)


@triton.jit
def _int4_kernel(x_desc, w_desc, s_ptr, p_ptr, b_ptr, y_ptr, ws_ptr, cnt_ptr, M, N, K, stride_sn, stride_ym,
                 GROUP: tl.constexpr, HAS_PQS: tl.constexpr, HAS_BIAS: tl.constexpr, DOT: tl.constexpr,
                 SPLIT_K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Grid (cdiv(M, BM), cdiv(N/2, BN), SPLIT_K): output rows 2i (low nibbles) and 2i+1 (high) of BN packed rows
    i over K range pid_k * K / SPLIT_K ...; tiles by TMA (x_desc [M, K], w_desc [N/2, K])."""
    pid_m, pid_n, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    k_len = K // SPLIT_K
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_i = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ri = tl.minimum(offs_i, N // 2 - 1)                 # clamp instead of masking: scale loads stay unmasked
    s_lo = s_ptr + (2 * ri).to(tl.int64) * stride_sn                                    # [BN]
    s_hi = s_lo + stride_sn
    if DOT:
        acc_lo = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
        acc_hi = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    else:
        acc_lo = tl.zeros((BLOCK_N, BLOCK_M, BLOCK_K), dtype=tl.float32)
        acc_hi = tl.zeros((BLOCK_N, BLOCK_M, BLOCK_K), dtype=tl.float32)
    for k0 in range(pid_k * k_len, (pid_k + 1) * k_len, BLOCK_K):
        p = w_desc.load([pid_n * BLOCK_N, k0]).to(tl.int32)                              # [BN, BK]
        x = scale_x(x_desc.load([pid_m * BLOCK_M, k0]), p_ptr, k0, BLOCK_K, HAS_PQS)      # [BM, BK]
        s_l = tl.load(s_lo + k0 // GROUP)[:, None]
        s_h = tl.load(s_hi + k0 // GROUP)[:, None]
        lo, hi = int4_f32(p), int4_f32(p >> 4)                                            # exact, fp32
        if DOT:
            # why: the int4 values enter tl.dot exactly (small integers in bf16/fp16) and the fp32 group scale
            # multiplies the partial product (BLOCK_K <= GROUP), so the weight is never rounded
            acc_lo += tl.dot(lo.to(x.dtype), tl.trans(x)) * s_l
            acc_hi += tl.dot(hi.to(x.dtype), tl.trans(x)) * s_h
        else:
            acc_lo = accumulate(acc_lo, lo * s_l, x, False)
            acc_hi = accumulate(acc_hi, hi * s_h, x, False)
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
def _nvfp4_kernel(x_desc, w_desc, s_ptr, s2_ptr, p_ptr, b_ptr, y_ptr, ws_ptr, cnt_ptr, M, N, K, stride_sn, stride_ym,
                  GROUP: tl.constexpr, HAS_PQS: tl.constexpr, HAS_BIAS: tl.constexpr, DOT: tl.constexpr,
                  SPLIT_K: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr):
    """Grid (cdiv(M, BM), cdiv(N, BN), SPLIT_K); tiles by TMA (x_desc [M, K], w_desc [N, K/2]). Low nibbles hold
    the even K elements, high the odd: rather than interleaving the weight, x is split into its even and odd columns
    (the sum over K does not care)."""
    HALF: tl.constexpr = BLOCK_K // 2
    pid_m, pid_n, pid_k = tl.program_id(0), tl.program_id(1), tl.program_id(2)
    k_len = K // SPLIT_K
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rn = tl.minimum(offs_n, N - 1)
    s_ptrs = s_ptr + rn.to(tl.int64) * stride_sn
    if DOT:
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_N, BLOCK_M, HALF), dtype=tl.float32)
    for k0 in range(pid_k * k_len, (pid_k + 1) * k_len, BLOCK_K):
        p = w_desc.load([pid_n * BLOCK_N, k0 // 2]).to(tl.int32)                          # [BN, BK/2]
        x = scale_x(x_desc.load([pid_m * BLOCK_M, k0]), p_ptr, k0, BLOCK_K, HAS_PQS)      # [BM, BK]
        x_even, x_odd = tl.split(tl.reshape(x, (BLOCK_M, HALF, 2)))
        # a byte j of the tile covers elements 2j, 2j+1: its block scale is j // (GROUP / 2) in byte units
        lo = group_scaled(e2m1(p & 15), s_ptrs, k0 // 2, BLOCK_N, HALF, GROUP // 2)
        hi = group_scaled(e2m1(p >> 4), s_ptrs, k0 // 2, BLOCK_N, HALF, GROUP // 2)
        acc = accumulate(acc, lo, x_even, DOT)
        acc = accumulate(acc, hi, x_odd, DOT)
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
    n, k = 2 * weight.shape[0], x.shape[-1]
    group = k // scale.shape[1]
    block_k = min(cfg.block_k, group)
    x_desc = tma_rows(x, [cfg.block_m, block_k])
    w_desc = tma_weight(weight, [cfg.block_n, block_k])
    m = x_desc.shape[0]
    grid = split_grid(m, triton.cdiv(n // 2, cfg.block_n), 2, k, block_k, cfg)
    ws, cnt = splitk.workspace(x.device)
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    _int4_kernel[grid](x_desc, w_desc, scale, pqs if pqs is not None else scale, bias if bias is not None else scale,
                       y, ws, cnt, m, n, k, scale.stride(0), y.stride(0), GROUP=group, HAS_PQS=pqs is not None,
                       HAS_BIAS=bias is not None, BLOCK_K=block_k, **_meta(cfg, grid[2]))
    return y.view(*x.shape[:-1], n)


def nvfp4_linear(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, scale_2: torch.Tensor,
                 pqs: torch.Tensor | None, bias: torch.Tensor | None, cfg) -> torch.Tensor:
    """x [..., K] -> [..., N]; weight uint8 [N, K/2], scale e4m3 [N, K/16], scale_2 fp32 [>= 1] (uses [0]);
    cfg.block_k >= 32 (a 16-byte TMA box of weight bytes)."""
    n, k = weight.shape[0], x.shape[-1]
    group = k // scale.shape[1]
    x_desc = tma_rows(x, [cfg.block_m, cfg.block_k])
    w_desc = tma_weight(weight, [cfg.block_n, cfg.block_k // 2])
    m = x_desc.shape[0]
    grid = split_grid(m, triton.cdiv(n, cfg.block_n), 1, k, cfg.block_k, cfg)
    ws, cnt = splitk.workspace(x.device)
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    _nvfp4_kernel[grid](x_desc, w_desc, scale, scale_2, pqs if pqs is not None else scale_2,
                        bias if bias is not None else scale_2, y, ws, cnt, m, n, k, scale.stride(0), y.stride(0),
                        GROUP=group, HAS_PQS=pqs is not None, HAS_BIAS=bias is not None, BLOCK_K=cfg.block_k,
                        **_meta(cfg, grid[2]))
    return y.view(*x.shape[:-1], n)
