"""Decode GEMV (M <= 8) for 4-bit weights in their checkpoint layouts, in packed half2 arithmetic: INT4-AWQ, NVFP4.

Why packed half2: the fp32 4-bit GEMVs issued ~10 instructions a weight at low occupancy (Nsight Compute,
docs/performance.md, session 4). Here every 32-bit operation handles two weights: two nibbles land in the two fp16
halves of a register by shifts and masks (no int->float conversion), and the scale and multiply-add run as
`mul/fma.rn.f16x2`, ~3.5 instructions a weight. Triton has no packed half2 operations, so each step is a
`tl.inline_asm_elementwise` block over one group of nibbles (Marlin's and TensorRT-LLM's GEMVs use the same tricks
in CUDA). That moved the limit to the load path, hence the loads below: one contiguous tile each for the weight
words (16-byte loads) and for x, both split in registers (session 5: 1.4-1.5x together at M = 1, configs
re-tuned).

Numerics: x is rounded to fp16 (exact for bf16 values in fp16's range; subnormals, |x| < 6e-5, lose bits), the
weights are scaled before they meet x (NVFP4's E2M1 * e4m3 product is exact in fp16), and the partial sums leave
fp16 for fp32 after 8 (NVFP4) / 4 (INT4) products per half, so they stay finite while |x| < ~50,000 (NVFP4) or
~14,000 / max|w| (INT4).

Layouts (read as int32 words, no copy): INT4 uint8 [N/2, K], a byte = rows 2i (low nibble) and 2i+1 of one k, so a
word is k..k+3 of two rows and (w >> 8j) & 0x000F000F picks k + j, k + j + 2 of the low row; NVFP4 uint8 [N, K/2],
a word is k..k+7 of one row and (w >> 4p) & 0x000F000F picks k + p, k + p + 4. Each thread holds a few rows of
the same K slice, so the x pairs it packs serve all its rows.

`ASM=False` runs the same tiles with fp32 Triton arithmetic: the CPU interpreter (TRITON_INTERPRET=1, which cannot
run inline PTX) tests the indexing with it; the GPU tests the half2 path.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ember.quantization.kernels import splitk
from ember.quantization.kernels.half2 import block, columns8, f16_bits, f16x2, half, use_asm
from ember.quantization.kernels.tiles import e2m1, rows
from ember.quantization.kernels.w4a16 import split_grid


def _nvfp4_asm() -> str:
    """PTX for one 16-element NVFP4 group of a row: $1, $2 the two words, $3 the scale (f16x2), $4..$11 the x pairs
    (word 0: nibbles p, p + 4 for p = 0..3, then word 1) -> $0 the fp32 dot product (before the 2^14 and global
    scale). Pair p: ((w << 9 - 4p) & 0x0E000E00) | ((w << 12 - 4p) & 0x80008000) puts nibbles p and p + 4 in two
    fp16 halves (sign -> bit 15, exponent and mantissa -> bits 9..11): the E2M1 value * 2^-14, exact (tiles.e2m1)."""
    lines = ["mov.b32 mm, 0x0E000E00;", "mov.b32 ms, 0x80008000;"]
    for word in (0, 1):
        for p in range(4):
            w, a, b = f"${1 + word}", 9 - 4 * p, 12 - 4 * p
            lines.append(f"shl.b32 a, {w}, {a};" if a >= 0 else f"shr.b32 a, {w}, {-a};")
            lines += [f"shl.b32 b, {w}, {b};", "and.b32 a, a, mm;", "and.b32 b, b, ms;", "or.b32 t, a, b;",
                      "mul.rn.f16x2 t, t, $3;"]
            x = f"${4 + 4 * word + p}"
            lines.append(f"mul.rn.f16x2 acc, t, {x};" if word == p == 0 else f"fma.rn.f16x2 acc, t, {x}, acc;")
    return block(".reg .b32 a, b, t, acc, mm, ms;", lines, [("acc", "$0")])


def _int4_asm() -> str:
    """PTX for 8 k of a packed row pair: $2, $3 the words (k..k+3, k+4..k+7), $4, $5 the scales of rows 2i, 2i+1
    (f16x2), $6..$9 the x pairs (k, k+2), (k+1, k+3), (k+4, k+6), (k+5, k+7) -> $0, $1 the two rows' fp32 dot
    products. 0x6400 | (nibble ^ 8) is the fp16 1024 + q + 8: minus 1032 gives q exactly."""
    lines = ["mov.b32 m4, 0x000F000F;", "mov.b32 mo, 0x64086408;"]
    for word in (0, 1):
        for j in (0, 1):
            for r, acc in enumerate(("accl", "acch")):
                lines += [f"shr.b32 t, ${2 + word}, {8 * j + 4 * r};", "and.b32 t, t, m4;", "xor.b32 t, t, mo;",
                          "sub.rn.f16x2 t, t, mo;", f"mul.rn.f16x2 t, t, ${4 + r};"]
                x = f"${6 + 2 * word + j}"
                lines.append(f"mul.rn.f16x2 {acc}, t, {x};" if word == j == 0 else
                             f"fma.rn.f16x2 {acc}, t, {x}, {acc};")
    return block(".reg .b32 t, accl, acch, m4, mo;", lines, [("accl", "$0"), ("acch", "$1")])


# (globals a jit function reads must be constexpr)
_NVFP4_ASM = tl.constexpr(_nvfp4_asm())
_NVFP4_CONSTRAINTS = tl.constexpr("=r" + ",r" * 11)
_INT4_ASM = tl.constexpr(_int4_asm())
_INT4_CONSTRAINTS = tl.constexpr("=r,=r" + ",r" * 8)


@triton.jit
def _spread(s, BLOCK_N: tl.constexpr, NG: tl.constexpr, BLOCK_G: tl.constexpr):
    """Per-group values s [BN, NG] repeated over each group's BG / NG units -> [BN, BG]."""
    return tl.reshape(tl.broadcast_to(s[:, :, None], (BLOCK_N, NG, BLOCK_G // NG)), (BLOCK_N, BLOCK_G))


@triton.jit
def _x_tile(x_ptr, rm, stride_xm, k0, WIDTH: tl.constexpr, p_ptr, HAS_PQS: tl.constexpr):
    """x[m, k0[g] .. k0[g] + WIDTH] [BM, BG, WIDTH] (times pre_quant_scale, rounded to x's dtype as the reference)
    as fp16 bits in int32 (one contiguous load; the pairs are shuffled in registers)."""
    kk = k0[None, :, None] + tl.arange(0, WIDTH)[None, None, :]                            # [1, BG, WIDTH]
    x = tl.load(x_ptr + rm[:, None, None] * stride_xm + kk)
    if HAS_PQS:
        x = (x.to(tl.float32) * tl.load(p_ptr + kk).to(x.dtype).to(tl.float32)).to(x.dtype)
    return f16_bits(x)


@triton.jit
def _nvfp4_pair_ref(w, P: tl.constexpr, s, xp):
    """fp32 twin of one NVFP4 pair of the asm block: (nibble p, p + 4) * scale . (x pair)."""
    lo = e2m1((w >> (4 * P)) & 15) * s
    hi = e2m1((w >> (4 * P + 16)) & 15) * s
    return lo * half(xp, False) + hi * half(xp, True)


@triton.jit
def _int4_pair_ref(w, S: tl.constexpr, s, xp):
    """fp32 twin of one INT4 pair: q(k + j), q(k + j + 2) of one row * scale . (x pair)."""
    lo = (((w >> S) & 15) ^ 8).to(tl.float32) - 8.0       # (tiles.int4_f32 needs the bits above the byte clear)
    hi = (((w >> (S + 16)) & 15) ^ 8).to(tl.float32) - 8.0
    return (lo * half(xp, False) + hi * half(xp, True)) * s


@triton.jit
def _nvfp4_loads(w_rows, s_rows, k0, words, g):
    """One step's weight words [BN, 2 BG] int32 and block scales [BN, BG] e4m3 from K element k0.
    Why one contiguous [BN, 2 BG] load, split in registers by the caller: 16-byte loads (a [BN, BG, 2] load gets
    8-byte ones): 1.2-1.4x faster at M = 1 (docs/performance.md, session 5)."""
    return tl.load(w_rows + k0 // 8 + words), tl.load(s_rows + (k0 // 16 + g)[None, :])


@triton.jit
def _nvfp4_kernel(x_ptr, w_ptr, s_ptr, s2_ptr, p_ptr, b_ptr, y_ptr, ws_ptr, cnt_ptr, M, N, stride_xm, stride_wn,
                  stride_sn, stride_ym, K_SPLIT, HAS_PQS: tl.constexpr, HAS_BIAS: tl.constexpr, ASM: tl.constexpr,
                  BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_G: tl.constexpr, SPLIT: tl.constexpr,
                  PF: tl.constexpr):
    """Grid (cdiv(N, BN), SPLIT): rows pid_n * BN.. over K elements pid_k * K_SPLIT.., BLOCK_G 16-element groups
    (two words, one e4m3 scale) a step. acc [BM, BN, BG] fp32."""
    pid_n, pid_k = tl.program_id(0), tl.program_id(1)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rn = tl.minimum(offs_n, N - 1)
    offs_m = tl.arange(0, BLOCK_M)
    rm = tl.minimum(offs_m, M - 1)
    g = tl.arange(0, BLOCK_G)
    words = tl.arange(0, 2 * BLOCK_G)[None, :]                                             # two a group
    w_rows = w_ptr + rn[:, None].to(tl.int64) * stride_wn                                  # [BN, 1] int32 words
    s_rows = s_ptr + rn[:, None].to(tl.int64) * stride_sn
    shape: tl.constexpr = (BLOCK_M, BLOCK_N, BLOCK_G)
    acc = tl.zeros(shape, dtype=tl.float32)
    k_lo = pid_k * K_SPLIT
    k_last = k_lo + K_SPLIT - 16 * BLOCK_G                                                 # the split's last step
    if PF:
        wt_n, s_n = _nvfp4_loads(w_rows, s_rows, k_lo, words, g)
    for k0 in range(k_lo, k_lo + K_SPLIT, 16 * BLOCK_G):
        gi = k0 // 16 + g                                                                  # [BG] group index
        if PF:   # the next step's loads go out before this step's math (its last step reloads itself)
            wt, s = wt_n, s_n
            wt_n, s_n = _nvfp4_loads(w_rows, s_rows, tl.minimum(k0 + 16 * BLOCK_G, k_last), words, g)
        else:
            wt, s = _nvfp4_loads(w_rows, s_rows, k0, words, g)
        s = s.to(tl.float32)                      # (converted here, not at the load: that would wait for it)
        w0, w1 = tl.split(tl.reshape(wt, (BLOCK_N, BLOCK_G, 2)))                           # [BN, BG]: k..k+7, +8
        xt = _x_tile(x_ptr, rm, stride_xm, 16 * gi, 16, p_ptr, HAS_PQS)                    # [BM, BG, 16]
        # pairs (p, p + 4) of each word: (word, +4, p) -> (word, p, +4), the halves packed, then split by p, word
        lo, hi = tl.split(tl.permute(tl.reshape(xt, (BLOCK_M, BLOCK_G, 2, 2, 4)), (0, 1, 2, 4, 3)))
        x0, x1, x2, x3, x4, x5, x6, x7 = columns8(tl.reshape(lo | (hi << 16), (BLOCK_M, BLOCK_G, 8)))  # 4 word + p
        w0 = tl.broadcast_to(w0[None], shape)
        w1 = tl.broadcast_to(w1[None], shape)
        if ASM:
            s2 = tl.broadcast_to(f16x2(s)[None], shape)
            part = tl.inline_asm_elementwise(
                _NVFP4_ASM, _NVFP4_CONSTRAINTS,
                [w0, w1, s2, tl.broadcast_to(x0, shape), tl.broadcast_to(x1, shape), tl.broadcast_to(x2, shape),
                 tl.broadcast_to(x3, shape), tl.broadcast_to(x4, shape), tl.broadcast_to(x5, shape),
                 tl.broadcast_to(x6, shape), tl.broadcast_to(x7, shape)],
                dtype=tl.int32, is_pure=True, pack=1).to(tl.float32, bitcast=True)
        else:
            s16 = s.to(tl.float16).to(tl.float32)[None]
            part = (_nvfp4_pair_ref(w0, 0, s16, x0) + _nvfp4_pair_ref(w0, 1, s16, x1)
                    + _nvfp4_pair_ref(w0, 2, s16, x2) + _nvfp4_pair_ref(w0, 3, s16, x3)
                    + _nvfp4_pair_ref(w1, 0, s16, x4) + _nvfp4_pair_ref(w1, 1, s16, x5)
                    + _nvfp4_pair_ref(w1, 2, s16, x6) + _nvfp4_pair_ref(w1, 3, s16, x7))
        acc += part
    y = tl.sum(acc, axis=2) * (tl.load(s2_ptr) * 16384.0)                                  # [BM, BN]; 2^14: e2m1
    extra = tl.zeros((1, BLOCK_N), dtype=tl.float32)
    if HAS_BIAS:
        extra += tl.load(b_ptr + rn).to(tl.float32)[None, :]
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    y_ptrs = y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :]
    splitk.store_tile(y, extra, y_ptrs, mask, ws_ptr, cnt_ptr, pid_n, pid_k, SPLIT, BLOCK_M, BLOCK_N)


@triton.jit
def _int4_kernel(x_ptr, w_ptr, s_ptr, p_ptr, b_ptr, y_ptr, ws_ptr, cnt_ptr, M, N, stride_xm, stride_wn, stride_sn,
                 stride_ym, K_SPLIT, GROUP: tl.constexpr, HAS_PQS: tl.constexpr, HAS_BIAS: tl.constexpr,
                 ASM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_G: tl.constexpr,
                 SPLIT: tl.constexpr, PF: tl.constexpr):
    """Grid (cdiv(N/2, BN), SPLIT): packed rows i (output rows 2i, 2i+1) over K elements pid_k * K_SPLIT..,
    BLOCK_G 8-element steps (two words) at a time. acc_lo / acc_hi [BM, BN, BG] fp32."""
    pid_n, pid_k = tl.program_id(0), tl.program_id(1)
    offs_i = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    ri = tl.minimum(offs_i, N // 2 - 1)
    offs_m = tl.arange(0, BLOCK_M)
    rm = tl.minimum(offs_m, M - 1)
    g = tl.arange(0, BLOCK_G)
    words = tl.arange(0, 2 * BLOCK_G)[None, :]                                             # two a group
    w_rows = w_ptr + ri[:, None].to(tl.int64) * stride_wn                                  # [BN, 1]
    s_lo = s_ptr + (2 * ri)[:, None].to(tl.int64) * stride_sn
    shape: tl.constexpr = (BLOCK_M, BLOCK_N, BLOCK_G)
    acc_lo = tl.zeros(shape, dtype=tl.float32)
    acc_hi = tl.zeros(shape, dtype=tl.float32)
    k_lo = pid_k * K_SPLIT
    k_last = k_lo + K_SPLIT - 8 * BLOCK_G
    if PF:
        wt_n = tl.load(w_rows + k_lo // 4 + words)
    for k0 in range(k_lo, k_lo + K_SPLIT, 8 * BLOCK_G):
        gi = k0 // 8 + g                                                                   # [BG] 8-element step
        if PF:
            wt = wt_n
            wt_n = tl.load(w_rows + tl.minimum(k0 + 8 * BLOCK_G, k_last) // 4 + words)
        else:
            wt = tl.load(w_rows + k0 // 4 + words)                                         # [BN, 2 BG] int32
        w0, w1 = tl.split(tl.reshape(wt, (BLOCK_N, BLOCK_G, 2)))                           # [BN, BG]: k..k+3, +4
        if 8 * BLOCK_G <= GROUP:   # the step lies in one group: one scale a row, converted once (1.1-1.4x at M = 1)
            sl = f16x2(tl.load(s_lo + k0 // GROUP))                                       # [BN, 1]
            sh = f16x2(tl.load(s_lo + stride_sn + k0 // GROUP))
        else:           # NG whole groups a step: NG scales a row, converted, then spread over their 8-k units
            NG: tl.constexpr = 8 * BLOCK_G // GROUP
            gs = (k0 // GROUP + tl.arange(0, NG))[None, :]
            sl = _spread(f16x2(tl.load(s_lo + gs)), BLOCK_N, NG, BLOCK_G)                 # [BN, BG]
            sh = _spread(f16x2(tl.load(s_lo + stride_sn + gs)), BLOCK_N, NG, BLOCK_G)
        xt = _x_tile(x_ptr, rm, stride_xm, 8 * gi, 8, p_ptr, HAS_PQS)                      # [BM, BG, 8]
        # pairs (j, j + 2) of each word: (word, +2, j) -> (word, j, +2), the halves packed, then split by j, word
        lo, hi = tl.split(tl.permute(tl.reshape(xt, (BLOCK_M, BLOCK_G, 2, 2, 2)), (0, 1, 2, 4, 3)))
        j0, j1 = tl.split(lo | (hi << 16))                                                 # [BM, BG, 2 words]
        x0, x2 = tl.split(j0)                                                              # (k, k+2), (k+4, k+6)
        x1, x3 = tl.split(j1)                                                              # (k+1, k+3), (k+5, k+7)
        x0, x1, x2, x3 = x0[:, None, :], x1[:, None, :], x2[:, None, :], x3[:, None, :]  # [BM, 1, BG]
        w0 = tl.broadcast_to(w0[None], shape)
        w1 = tl.broadcast_to(w1[None], shape)
        if ASM:
            lo, hi = tl.inline_asm_elementwise(
                _INT4_ASM, _INT4_CONSTRAINTS,
                [w0, w1, tl.broadcast_to(sl[None], shape), tl.broadcast_to(sh[None], shape),
                 tl.broadcast_to(x0, shape), tl.broadcast_to(x1, shape), tl.broadcast_to(x2, shape),
                 tl.broadcast_to(x3, shape)],
                dtype=(tl.int32, tl.int32), is_pure=True, pack=1)
            acc_lo += lo.to(tl.float32, bitcast=True)
            acc_hi += hi.to(tl.float32, bitcast=True)
        else:
            s_l = half(sl, False)[None]
            s_h = half(sh, False)[None]
            acc_lo += (_int4_pair_ref(w0, 0, s_l, x0) + _int4_pair_ref(w0, 8, s_l, x1)
                       + _int4_pair_ref(w1, 0, s_l, x2) + _int4_pair_ref(w1, 8, s_l, x3))
            acc_hi += (_int4_pair_ref(w0, 4, s_h, x0) + _int4_pair_ref(w0, 12, s_h, x1)
                       + _int4_pair_ref(w1, 4, s_h, x2) + _int4_pair_ref(w1, 12, s_h, x3))
    y_lo, y_hi = tl.sum(acc_lo, axis=2), tl.sum(acc_hi, axis=2)                            # [BM, BN]
    b_lo = tl.zeros((1, BLOCK_N), dtype=tl.float32)
    b_hi = tl.zeros((1, BLOCK_N), dtype=tl.float32)
    if HAS_BIAS:
        b_lo += tl.load(b_ptr + 2 * ri).to(tl.float32)[None, :]
        b_hi += tl.load(b_ptr + 2 * ri + 1).to(tl.float32)[None, :]
    mask = (offs_m[:, None] < M) & (offs_i[None, :] < N // 2)
    y_ptrs = y_ptr + offs_m[:, None] * stride_ym + 2 * offs_i[None, :]
    splitk.store_tile(y_lo, b_lo, y_ptrs, mask, ws_ptr, cnt_ptr, 2 * pid_n, pid_k, SPLIT, BLOCK_M, BLOCK_N)
    splitk.store_tile(y_hi, b_hi, y_ptrs + 1, mask, ws_ptr, cnt_ptr, 2 * pid_n + 1, pid_k, SPLIT, BLOCK_M, BLOCK_N)


def nvfp4_gemv(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, scale_2: torch.Tensor,
               pqs: torch.Tensor | None, bias: torch.Tensor | None, cfg) -> torch.Tensor:
    """x [..., K] (M <= cfg.block_m rows) -> [..., N]; weight uint8 [N, K/2], scale e4m3 [N, K/16], scale_2 fp32
    [>= 1] (uses [0]). cfg: dispatch.Config ("h2", block_m, block_n rows, block_k K elements a step, num_warps,
    num_stages, split_k)."""
    n, k = weight.shape[0], x.shape[-1]
    if k != 16 * scale.shape[1]:
        raise ValueError(f"the NVFP4 GEMV takes 16-element blocks, this weight has {k // scale.shape[1]}")
    x2 = rows(x)
    _, tiles, split = split_grid(x2.shape[0], triton.cdiv(n, cfg.block_n), 1, k, cfg.block_k, cfg)   # one M tile
    words = weight.view(torch.int32)                                                       # [N, K/8]
    ws, cnt = splitk.workspace(x.device)
    y = torch.empty(x2.shape[0], n, dtype=x.dtype, device=x.device)
    _nvfp4_kernel[(tiles, split)](
        x2, words, scale, scale_2, pqs if pqs is not None else scale_2, bias if bias is not None else scale_2, y,
        ws, cnt, x2.shape[0], n, x2.stride(0), words.stride(0), scale.stride(0), y.stride(0), k // split,
        HAS_PQS=pqs is not None, HAS_BIAS=bias is not None, ASM=use_asm(x),
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_G=cfg.block_k // 16, SPLIT=split, PF=cfg.num_stages > 1,
        num_warps=cfg.num_warps, num_stages=1)
    return y.view(*x.shape[:-1], n)


def int4_gemv(x: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor, pqs: torch.Tensor | None,
              bias: torch.Tensor | None, cfg) -> torch.Tensor:
    """x [..., K] (M <= cfg.block_m rows) -> [..., N]; weight uint8 [N/2, K], scale fp32 [N, K/group]. cfg as
    nvfp4_gemv's, block_n counting packed rows (two output rows each)."""
    n, k = 2 * weight.shape[0], x.shape[-1]
    x2 = rows(x)
    _, tiles, split = split_grid(x2.shape[0], triton.cdiv(n // 2, cfg.block_n), 2, k, cfg.block_k, cfg)
    words = weight.view(torch.int32)                                                       # [N/2, K/4]
    ws, cnt = splitk.workspace(x.device)
    y = torch.empty(x2.shape[0], n, dtype=x.dtype, device=x.device)
    _int4_kernel[(tiles, split)](
        x2, words, scale, pqs if pqs is not None else scale, bias if bias is not None else scale, y, ws, cnt,
        x2.shape[0], n, x2.stride(0), words.stride(0), scale.stride(0), y.stride(0), k // split,
        GROUP=k // scale.shape[1], HAS_PQS=pqs is not None, HAS_BIAS=bias is not None, ASM=use_asm(x),
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_G=cfg.block_k // 8, SPLIT=split, PF=cfg.num_stages > 1,
        num_warps=cfg.num_warps, num_stages=1)
    return y.view(*x.shape[:-1], n)
