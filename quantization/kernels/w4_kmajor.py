"""Decode GEMV (M <= 4) for 4-bit weights in a K-major layout repacked at load: INT4-AWQ and NVFP4.

Why a second layout: the checkpoint layouts (two output rows a byte for INT4, two K elements a byte for NVFP4) make
each program read short rows of bytes. Here the weight is int32 [K/8, N], N contiguous, so a warp reads 512
contiguous bytes a row, and the 8 nibbles of a word are 8 different K rows of one column: block b of 128 K elements
is word rows 16b..16b+15, and nibble j of word row 16b + r is element k = 128b + 16j + r. Decoding nibble j of a
[16, BN] word tile therefore gives the K rows 128b + 16j + (0..15), which meet the 16 contiguous x values there.
Each program reads its whole K slice and the splits of K meet in `splitk.store_tile` (one launch).

Nibble decoding without int->float conversions:
  INT4: u = q + 8 stored; its bits placed in an fp32 mantissa give 1 + u/16 (one shift, one LOP3), and
        sum(q x) = 16 sum((1 + u/16) x) - 24 sum(x).
  NVFP4: the E2M1 code placed in fp16 bits (sign 15, exponent/mantissa 9..11) is its value * 2^-14, exact (code 1
        is an fp16 subnormal); 2^14 is folded into the global scale (as tiles.e2m1).
Scales are stored [K/group, N] (fp32 INT4, e4m3 NVFP4) so a program's scale loads are contiguous too.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ember.quantization.kernels import splitk
from ember.quantization.numerics import int4, nvfp4

BLOCK = 128          # K elements per block of 16 word rows


def supports(n: int, k: int, group: int) -> bool:
    """Shapes the layout takes: K in whole blocks, a group that is a whole number of 16-row slices."""
    return k % BLOCK == 0 and group % 16 == 0 and (group >= BLOCK and group % BLOCK == 0 or BLOCK % group == 0)


def _words(codes: torch.Tensor) -> torch.Tensor:
    """codes [N, K] in 0..15 -> int32 [K/8, N] (module docstring)."""
    n, k = codes.shape
    c = codes.to(torch.int64).view(n, k // BLOCK, 8, 16)                      # [N, b, j, r]
    shifts = (4 * torch.arange(8, device=codes.device)).view(1, 1, 8, 1)
    words = (c << shifts).sum(dim=2)                                          # [N, b, r]: disjoint bits
    words = torch.where(words >= 2 ** 31, words - 2 ** 32, words).to(torch.int32)
    return words.view(n, k // 8).t().contiguous()


@torch.no_grad()
def prepare(layer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, int] | None:
    """(packed int32 [K/8, N], scale [K/group, N], NVFP4 global scale or None, group) for an INT4-AWQ or NVFP4
    QuantLinear, or None where the layout cannot take its shape."""
    n, k = layer.out_features, layer.in_features
    group = k // layer.weight_scale.shape[1]
    if not supports(n, k, group):
        return None
    if layer.format.quant_algo == "W4A16_AWQ":
        codes, scale_2 = int4.unpack(layer.weight).to(torch.int16) + 8, None       # u = q + 8
    else:
        codes, scale_2 = nvfp4.unpack(layer.weight), layer.weight_scale_2
    return _words(codes), layer.weight_scale.t().contiguous(), scale_2, group


@triton.jit
def _shift(w, s: tl.constexpr):
    if s >= 0:
        return w << s
    else:
        return w >> (-s)


@triton.jit
def _nibble(w, J: tl.constexpr, NVFP4: tl.constexpr):
    """Nibble J of int32 words `w` as fp32: 1 + u/16 (INT4) or E2M1 value * 2^-14 (NVFP4)."""
    if NVFP4:
        bits = (_shift(w, 12 - 4 * J) & 0x8000) | (_shift(w, 9 - 4 * J) & 0x0E00)
        return bits.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
    else:
        return ((_shift(w, 19 - 4 * J) & 0x00780000) | 0x3F800000).to(tl.float32, bitcast=True)


@triton.jit
def _kmajor_kernel(x_ptr, w_ptr, s_ptr, s2_ptr, p_ptr, b_ptr, y_ptr, ws_ptr, cnt_ptr, M, N, stride_xm, stride_ym,
                   GROUP: tl.constexpr, NVFP4: tl.constexpr, HAS_PQS: tl.constexpr, HAS_BIAS: tl.constexpr,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCKS: tl.constexpr, SPLIT: tl.constexpr):
    """Grid (cdiv(N, BN), SPLIT): columns pid_n * BN.. over K blocks pid_k * BLOCKS.. (BLOCKS of 128)."""
    pid_n, pid_k = tl.program_id(0), tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rn = tl.minimum(offs_n, N - 1)
    offs_m = tl.arange(0, BLOCK_M)
    rm = tl.minimum(offs_m, M - 1)
    offs_r = tl.arange(0, 16)
    PER_J: tl.constexpr = GROUP < 128                     # a scale per 16-row slice, else one per block
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for b in range(pid_k * BLOCKS, (pid_k + 1) * BLOCKS):
        w = tl.load(w_ptr + (b * 16 + offs_r)[:, None].to(tl.int64) * N + rn[None, :])     # [16, BN] int32
        t = tl.zeros((BLOCK_M, 16, BLOCK_N), dtype=tl.float32)
        xs = tl.zeros((BLOCK_M, 16), dtype=tl.float32)
        for j in tl.static_range(8):
            kk = b * 128 + j * 16 + offs_r                                                 # [16]
            x = tl.load(x_ptr + rm[:, None] * stride_xm + kk[None, :])                     # [BM, 16]
            if HAS_PQS:
                x = (x.to(tl.float32) * tl.load(p_ptr + kk).to(tl.float32)[None, :]).to(x.dtype)
            x = x.to(tl.float32)
            v = _nibble(w, j, NVFP4)                                                       # [16, BN]
            if PER_J:
                s = tl.load(s_ptr + ((b * 128 + j * 16) // GROUP) * N + rn).to(tl.float32)   # [BN]
                p = tl.sum(v[None] * x[:, :, None], axis=1)                                # [BM, BN]
                if not NVFP4:
                    p = 16.0 * p - 24.0 * tl.sum(x, axis=1)[:, None]
                acc += p * s[None, :]
            else:
                t += v[None] * x[:, :, None]
                xs += x
        if not PER_J:
            s = tl.load(s_ptr + ((b * 128) // GROUP) * N + rn).to(tl.float32)             # [BN]
            p = tl.sum(t, axis=1)
            if not NVFP4:
                p = 16.0 * p - 24.0 * tl.sum(xs, axis=1)[:, None]
            acc += p * s[None, :]
    if NVFP4:
        acc = acc * (tl.load(s2_ptr) * 16384.0)
    extra = tl.zeros((1, BLOCK_N), dtype=tl.float32)
    if HAS_BIAS:
        extra += tl.load(b_ptr + rn).to(tl.float32)[None, :]
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    y_ptrs = y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :]
    splitk.store_tile(acc, extra, y_ptrs, mask, ws_ptr, cnt_ptr, pid_n, pid_k, SPLIT, BLOCK_M, BLOCK_N)


def gemv(x: torch.Tensor, packed: torch.Tensor, scale_t: torch.Tensor, scale_2: torch.Tensor | None, group: int,
         pqs: torch.Tensor | None, bias: torch.Tensor | None, cfg) -> torch.Tensor:
    """x [..., K] (M <= cfg.block_m rows) -> [..., N]. packed int32 [K/8, N]; scale_t [K/group, N]; scale_2 given:
    NVFP4, else INT4. cfg: dispatch.Config ("km", block_m, block_n, -, num_warps, num_stages, split_k)."""
    x2 = x.reshape(-1, x.shape[-1])
    x2 = x2 if x2.stride(-1) == 1 else x2.contiguous()
    m, n, blocks = x2.shape[0], packed.shape[1], packed.shape[0] // 16
    tiles = triton.cdiv(n, cfg.block_n)
    split = splitk.max_split(tiles, cfg.block_m * cfg.block_n, cfg.split_k)
    while blocks % split:
        split //= 2
    ws, cnt = splitk.workspace(x.device)
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    _kmajor_kernel[(tiles, split)](      # absent optional tensors: any pointer (the kernel never reads it)
        x2, packed, scale_t, scale_2 if scale_2 is not None else scale_t, pqs if pqs is not None else scale_t,
        bias if bias is not None else scale_t, y, ws, cnt, m, n, x2.stride(0), y.stride(0), GROUP=group,
        NVFP4=scale_2 is not None, HAS_PQS=pqs is not None, HAS_BIAS=bias is not None, BLOCK_M=cfg.block_m,
        BLOCK_N=cfg.block_n, BLOCKS=blocks // split, SPLIT=split, num_warps=cfg.num_warps,
        num_stages=cfg.num_stages)
    return y.view(*x.shape[:-1], n)
