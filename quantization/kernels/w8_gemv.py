"""Decode GEMV (M <= 8) for FP8 e4m3 weights in packed half2 arithmetic: FP8, FP8RowWise and W4A8's staged FP8 weight.

Why: at M = 1 the FP8 step ran w8.py's fp32 GEMV or act-quant + `_scaled_mm` at 1.6-2.4 TB/s (kernels/table.py).
Hopper converts two e4m3 bytes to an f16x2 in one instruction (`cvt.rn.f16x2.e4m3x2`, sm_89+), so with the activation
pairs packed in f16x2 the inner loop is one convert and one `fma.rn.f16x2` per two weights (w4_gemv.py's
design: one contiguous load of int32 weight words a step, 16-byte loads, the PTX over a 16-element group).

Numerics (W8A8, as the format's reference `act`): x (times pre_quant_scale) is quantized to e4m3 with the static
(FP8) or per-token (FP8RowWise: amax / 448) scale, exactly as w8.py, then scaled by 2^-8 in fp16, which is exact
(e4m3's smallest step, 2^-9, becomes 2^-17, an fp16 subnormal); a product is then at most 448 * 448 / 256 = 784, so
the f16x2 sums of 8 products a half stay finite before they leave for fp32. A product (<= 8 significant bits) is
exact in fp16 unless it falls below 2^-14 into fp16's subnormals (both factors in e4m3's lowest binades); the sums
round to fp16's 11 bits. y = 256 * s_w * s_x * sum (+ bias).

Fused epilogue (`gated`, why: at batch 1 the act-and-mul kernel was a ~1.6 us launch a layer that bf16 folds into its
down_proj GEMV): a [gate | up] layer can return act(gate) * up, each program holding matching gate and up rows.

Layout: weight fp8 [N, K] read as int32 words [N, K/4]; a word is k..k+3 of a row, its low 16 bits convert to the
(k, k+1) half pair, its high 16 bits to (k+2, k+3), so the x pairs are consecutive elements. `ASM=False` runs the
same tiles in fp32 Triton arithmetic (the CPU interpreter tests the indexing with it; the GPU tests the PTX).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ember.layers.gemv_kernels import ACTS, act_times
from ember.quantization.kernels import splitk
from ember.quantization.kernels.half2 import block, columns8, f16_bits, half, use_asm
from ember.quantization.kernels.tiles import rows
from ember.quantization.kernels.w4a16 import split_grid
from ember.quantization.kernels.w8 import ACT, _quantize_act


def _fp8_asm() -> str:
    """PTX for one 16-element group of a row: $1..$4 the words (k..k+3, .. k+12..k+15), $5..$12 the x pairs (k, k+1),
    (k+2, k+3), .. -> $0 the fp32 dot product (before the 256 * scales)."""
    lines = []
    for word in range(4):
        lines.append(f"mov.b32 {{lo, hi}}, ${1 + word};")
        for h, half16 in enumerate(("lo", "hi")):
            x = f"${5 + 2 * word + h}"
            lines.append(f"cvt.rn.f16x2.e4m3x2 t, {half16};")
            lines.append(f"mul.rn.f16x2 acc, t, {x};" if word == h == 0 else f"fma.rn.f16x2 acc, t, {x}, acc;")
    return block(".reg .b32 t, acc;", lines, [("acc", "$0")])


GATED_ACTS = {name: code for name, code in ACTS.items() if name}
_FP8_ASM = tl.constexpr(_fp8_asm())
_FP8_CONSTRAINTS = tl.constexpr("=r" + ",r" * 12)


@triton.jit
def _e4m3_f32(b):
    """int32 e4m3 codes (the low byte) -> fp32 (the fp32 twin's decode; saturated codes, no NaN)."""
    e = (b >> 3) & 15
    m = (b & 7).to(tl.float32)
    mag = tl.where(e == 0, m * 0.001953125, (8.0 + m) * tl.math.exp2(e.to(tl.float32) - 10.0))   # 2^-9; 2^(e-10)
    return tl.where((b & 128) != 0, -mag, mag)


@triton.jit
def _pair_ref(w, SHIFT: tl.constexpr, xp):
    """fp32 twin of one pair: bytes SHIFT/8, SHIFT/8 + 1 of word w . (x pair)."""
    return _e4m3_f32(w >> SHIFT) * half(xp, False) + _e4m3_f32(w >> (SHIFT + 8)) * half(xp, True)


@triton.jit
def _x_pairs(x_ptr, rm, stride_xm, kk, s_x, p_ptr, ACT: tl.constexpr, HAS_PQS: tl.constexpr):
    """x[m, kk] [BM, BG, 16] (times pre_quant_scale) quantized as the format does, times 2^-8, as f16x2 pairs
    [BM, BG, 8] int32 (element 2j low, 2j + 1 high)."""
    x = tl.load(x_ptr + rm[:, None, None] * stride_xm + kk)
    if HAS_PQS:
        x = (x.to(tl.float32) * tl.load(p_ptr + kk).to(x.dtype).to(tl.float32)).to(x.dtype)
    q = _quantize_act(x, s_x, ACT) * 0.00390625                                            # exact: 2^-8
    lo, hi = tl.split(tl.reshape(f16_bits(q), (q.shape[0], q.shape[1], 8, 2)))
    return lo | (hi << 16)


@triton.jit
def _fp8_kernel(x_ptr, w_ptr, sw_ptr, sx_ptr, p_ptr, b_ptr, y_ptr, ws_ptr, cnt_ptr, M, N, K, stride_xm, stride_wn,
                stride_ym, K_SPLIT, ACT: tl.constexpr, W_ROWS: tl.constexpr, HAS_PQS: tl.constexpr,
                HAS_BIAS: tl.constexpr, ASM: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                BLOCK_G: tl.constexpr, SPLIT: tl.constexpr, PF: tl.constexpr, GATED: tl.constexpr = 0):
    """Grid (cdiv(N, BN), SPLIT): rows pid_n * BN.. over K elements pid_k * K_SPLIT.., BLOCK_G 16-element groups
    (four words) a step. acc [BM, BN, BG] fp32.
    GATED 1 (SiLU) / 2 (GeLU-tanh), SPLIT 1: the rows are [gate | up] (N = 2I) and y [M, I] = act(gate) * up; a
    program takes BN / 2 gate rows i.. and the up rows I + i.., interleaved (even lanes gate, odd lanes up)."""
    pid_n, pid_k = tl.program_id(0), tl.program_id(1)
    if GATED:
        HALF: tl.constexpr = BLOCK_N // 2
        lane = tl.arange(0, BLOCK_N)
        offs_n = pid_n * HALF + tl.arange(0, HALF)                                        # output columns
        rn = tl.minimum(pid_n * HALF + lane // 2, N // 2 - 1) + (lane % 2) * (N // 2)
    else:
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        rn = tl.minimum(offs_n, N - 1)
    offs_m = tl.arange(0, BLOCK_M)
    rm = tl.minimum(offs_m, M - 1)
    g = tl.arange(0, BLOCK_G)
    words = tl.arange(0, 4 * BLOCK_G)[None, :]                                             # four a group
    w_rows = w_ptr + rn[:, None].to(tl.int64) * stride_wn                                  # [BN, 1] int32 words
    k_lo = pid_k * K_SPLIT
    k_last = k_lo + K_SPLIT - 16 * BLOCK_G
    if PF:
        wt_n = tl.load(w_rows + k_lo // 4 + words)
    if ACT == 3:   # per-token scale: a first pass over the whole row for its amax (a few KB, from L2)
        amax = tl.zeros((BLOCK_M, 1), dtype=tl.float32)
        for k0 in range(0, K, 16 * BLOCK_G):
            xk = tl.load(x_ptr + rm[:, None] * stride_xm + k0 + tl.arange(0, 16 * BLOCK_G)[None, :])
            amax = tl.maximum(amax, tl.max(tl.abs(xk.to(tl.float32)), axis=1, keep_dims=True))
        s_x = tl.reshape(tl.maximum(amax / 448.0, 1e-12), (BLOCK_M, 1, 1))
    else:
        s_x = tl.load(sx_ptr)
    shape: tl.constexpr = (BLOCK_M, BLOCK_N, BLOCK_G)
    acc = tl.zeros(shape, dtype=tl.float32)
    for k0 in range(k_lo, k_lo + K_SPLIT, 16 * BLOCK_G):
        if PF:   # the next step's words go out before this step's math (its last step reloads itself)
            wt = wt_n
            wt_n = tl.load(w_rows + tl.minimum(k0 + 16 * BLOCK_G, k_last) // 4 + words)
        else:
            wt = tl.load(w_rows + k0 // 4 + words)                                         # [BN, 4 BG]
        ev, od = tl.split(tl.reshape(wt, (BLOCK_N, BLOCK_G, 2, 2)))                        # word bit 0
        w0, w2 = tl.split(ev)                                                              # [BN, BG]
        w1, w3 = tl.split(od)
        kk = (k0 + 16 * g)[None, :, None] + tl.arange(0, 16)[None, None, :]                # [1, BG, 16]
        xp = _x_pairs(x_ptr, rm, stride_xm, kk, s_x, p_ptr, ACT, HAS_PQS)                  # [BM, BG, 8]
        x0, x1, x2, x3, x4, x5, x6, x7 = columns8(xp)                                      # [BM, 1, BG]
        w0, w1 = tl.broadcast_to(w0[None], shape), tl.broadcast_to(w1[None], shape)
        w2, w3 = tl.broadcast_to(w2[None], shape), tl.broadcast_to(w3[None], shape)
        if ASM:
            part = tl.inline_asm_elementwise(
                _FP8_ASM, _FP8_CONSTRAINTS,
                [w0, w1, w2, w3, tl.broadcast_to(x0, shape), tl.broadcast_to(x1, shape), tl.broadcast_to(x2, shape),
                 tl.broadcast_to(x3, shape), tl.broadcast_to(x4, shape), tl.broadcast_to(x5, shape),
                 tl.broadcast_to(x6, shape), tl.broadcast_to(x7, shape)],
                dtype=tl.int32, is_pure=True, pack=1).to(tl.float32, bitcast=True)
        else:
            part = (_pair_ref(w0, 0, x0) + _pair_ref(w0, 16, x1) + _pair_ref(w1, 0, x2) + _pair_ref(w1, 16, x3)
                    + _pair_ref(w2, 0, x4) + _pair_ref(w2, 16, x5) + _pair_ref(w3, 0, x6) + _pair_ref(w3, 16, x7))
        acc += part
    y = tl.sum(acc, axis=2) * 256.0                                                        # [BM, BN]
    if ACT == 3:
        y *= tl.reshape(s_x, (BLOCK_M, 1))
    else:
        y *= s_x
    if W_ROWS:
        y *= tl.load(sw_ptr + rn).to(tl.float32)[None, :]
    else:
        y *= tl.load(sw_ptr).to(tl.float32)
    extra = tl.zeros((1, BLOCK_N), dtype=tl.float32)
    if HAS_BIAS:
        extra += tl.load(b_ptr + rn).to(tl.float32)[None, :]
    y_ptrs = y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :]
    if GATED:   # the GEMV's output rounded as the two-kernel path stores it, then act-and-mul's rounding
        dt = y_ptr.dtype.element_ty
        gate, up = tl.split(tl.reshape((y + extra).to(dt).to(tl.float32), (BLOCK_M, HALF, 2)))
        mask = (offs_m[:, None] < M) & (offs_n[None, :] < N // 2)
        tl.store(y_ptrs, act_times(gate, up, GATED, dt), mask=mask)
    else:
        mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
        splitk.store_tile(y, extra, y_ptrs, mask, ws_ptr, cnt_ptr, pid_n, pid_k, SPLIT, BLOCK_M, BLOCK_N)


def fp8_gemv(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, per_row: bool, act: str,
             input_scale: torch.Tensor | None, pqs: torch.Tensor | None, bias: torch.Tensor | None,
             cfg, gated: str | None = None) -> torch.Tensor:
    """x [..., K] (M <= cfg.block_m rows) -> [..., N]; weight fp8 e4m3 [N, K]; weight_scale fp32 [N] (per_row) or
    read at [0]; act "fp8" (static, input_scale read at [0]) or "fp8_token"; cfg: dispatch.Config ("h2",
    block_m, block_n rows, block_k K elements a step, num_warps, num_stages (2: loads double-buffered), split_k).
    gated "silu" / "gelu_tanh": the weight is [gate | up] and the result [..., N / 2] = act(gate) * up, rounded as
    the GEMV then ember's act-and-mul kernel would round it (needs cfg.split_k 1 and an even block_n)."""
    n, k = weight.shape
    if k % 16 or act not in ("fp8", "fp8_token") or x.shape[-1] != k or (act == "fp8_token" and pqs is not None):
        raise ValueError(f"the FP8 GEMV takes K % 16 == 0, x [..., K] and an fp8 activation, per token only without "
                         f"a pre_quant_scale (weight {tuple(weight.shape)}, x {tuple(x.shape)}, act {act!r})")
    if gated and (gated not in GATED_ACTS or cfg.split_k != 1 or n % 2 or cfg.block_n % 2):
        raise ValueError(f"the gated FP8 GEMV takes act {sorted(GATED_ACTS)}, split_k 1 and an even N and block_n "
                         f"(got {gated!r}, {cfg}, N {n})")
    x2 = rows(x)
    n_out = n // 2 if gated else n
    _, tiles, split = split_grid(x2.shape[0], triton.cdiv(n_out, cfg.block_n // (2 if gated else 1)), 1, k,
                                 cfg.block_k, cfg)                                           # one M tile
    words = weight.view(torch.int32)                                                       # [N, K/4]
    ws, cnt = splitk.workspace(x.device)
    y = torch.empty(x2.shape[0], n_out, dtype=x.dtype, device=x.device)
    dummy = weight_scale
    _fp8_kernel[(tiles, split)](
        x2, words, weight_scale, input_scale if input_scale is not None else dummy, pqs if pqs is not None else dummy,
        bias if bias is not None else dummy, y, ws, cnt, x2.shape[0], n, k, x2.stride(0), words.stride(0),
        y.stride(0), k // split, ACT=ACT[act], W_ROWS=per_row, HAS_PQS=pqs is not None, HAS_BIAS=bias is not None,
        ASM=use_asm(x), BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_G=cfg.block_k // 16, SPLIT=split,
        PF=cfg.num_stages > 1, GATED=GATED_ACTS.get(gated, 0), num_warps=cfg.num_warps, num_stages=1)
    return y.view(*x.shape[:-1], n_out)
