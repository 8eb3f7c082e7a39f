"""8-bit-weight GEMM for small M (decode): FP8 / INT8 weights, the activation quantized in registers.

y[M, N] = s_x * s_w * (q(x * pre_quant_scale) @ W^T) (+ b), one launch: no separate act-quant, cast or pad
kernels (what `torch._scaled_mm` needs around it). ACT picks what the activation goes through, exactly as the
format's reference `act` does (ember.quantization.formats):
  0 none (W8A16)                      1 static fp8 e4m3 (FP8: clamp(x / s_in, +-448) -> e4m3)
  2 static int8 (W8A8 SmoothQuant)    3 dynamic per-token fp8 (FP8RowWise: s_x = max(amax_row / 448, 1e-12))
Weights fp8 e4m3 or int8 [N, K] with a per-tensor (read at [0]) or per-row fp32 scale. Integer and e4m3 values
are exact in bf16, so the tl.dot mode runs bf16 tensor cores on exactly the quantized values. Imported lazily.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ember.quantization.kernels.tiles import accumulate, finish, int8_f32, load_x, rows

ACT = {"none": 0, "fp8": 1, "int8": 2, "fp8_token": 3}


@triton.jit
def _quantize_act(x, s_x, ACT: tl.constexpr):
    """x [BM, BK] -> the quantized values (fp32, unscaled), s_x [BM, 1] (or scalar) the activation scale."""
    if ACT == 0:
        return x.to(tl.float32)
    elif ACT == 2:
        v = tl.minimum(tl.maximum(x.to(tl.float32) / s_x, -128.0), 127.0)
        return (v + 12582912.0) - 12582912.0      # why: 1.5 * 2^23 rounds half to even, as torch.round
    else:
        v = tl.minimum(tl.maximum(x.to(tl.float32) / s_x, -448.0), 448.0)
        return v.to(tl.float8e4nv).to(tl.float32)


@triton.jit
def _w8_kernel(x_ptr, w_ptr, sw_ptr, sx_ptr, p_ptr, b_ptr, y_ptr, M, N, K, stride_xm, stride_wn, stride_ym,
               ACT: tl.constexpr, W_INT8: tl.constexpr, W_ROWS: tl.constexpr, HAS_PQS: tl.constexpr,
               HAS_BIAS: tl.constexpr, DOT: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
               BLOCK_K: tl.constexpr):
    """Grid (cdiv(M, BM), cdiv(N, BN)); K % BK == 0."""
    pid_m, pid_n = tl.program_id(0), tl.program_id(1)
    offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_k = tl.arange(0, BLOCK_K)
    rm = tl.minimum(offs_m, M - 1)
    rn = tl.minimum(offs_n, N - 1)
    w_ptrs = w_ptr + rn[:, None].to(tl.int64) * stride_wn + offs_k[None, :]             # [BN, BK]
    x_ptrs = x_ptr + rm[:, None].to(tl.int64) * stride_xm + offs_k[None, :]             # [BM, BK]
    if ACT == 3:   # a first pass over the row for its amax (x is a few KB per row, read from L2)
        amax = tl.zeros((BLOCK_M,), dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            amax = tl.maximum(amax, tl.max(tl.abs(tl.load(x_ptrs + k0).to(tl.float32)), axis=1))
        s_x = tl.maximum(amax / 448.0, 1e-12)[:, None]                                  # [BM, 1]
    elif ACT != 0:
        s_x = tl.load(sx_ptr)
    else:
        s_x = 1.0
    if DOT:
        acc = tl.zeros((BLOCK_N, BLOCK_M), dtype=tl.float32)
    else:
        acc = tl.zeros((BLOCK_N, BLOCK_M, BLOCK_K), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        if W_INT8:
            w = int8_f32(tl.load(w_ptrs))
        else:
            w = tl.load(w_ptrs).to(tl.float32)
        x = load_x(x_ptrs, p_ptr, k0, BLOCK_K, HAS_PQS)
        xq = _quantize_act(x, s_x, ACT)
        acc = accumulate(acc, w, xq.to(x.dtype) if DOT else xq, DOT)
        w_ptrs += BLOCK_K
        x_ptrs += BLOCK_K
    y = finish(acc, DOT)                                                                  # [BN, BM]
    if W_ROWS:
        y *= tl.load(sw_ptr + rn).to(tl.float32)[:, None]
    else:
        y *= tl.load(sw_ptr).to(tl.float32)
    if ACT == 3:
        y *= tl.reshape(s_x, (1, BLOCK_M))
    elif ACT != 0:
        y *= s_x
    if HAS_BIAS:
        y += tl.load(b_ptr + rn).to(tl.float32)[:, None]
    mask = (offs_n[:, None] < N) & (offs_m[None, :] < M)
    tl.store(y_ptr + offs_m[None, :].to(tl.int64) * stride_ym + offs_n[:, None], y.to(y_ptr.dtype.element_ty),
             mask=mask)


def w8_linear(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, per_row: bool, act: str,
              input_scale: torch.Tensor | None, pqs: torch.Tensor | None, bias: torch.Tensor | None,
              cfg) -> torch.Tensor:
    """x [..., K] -> [..., N]; weight fp8/int8 [N, K]; weight_scale fp32 [N] (per_row) or [shards] (per tensor,
    read at [0]); input_scale fp32 [shards] (read at [0]) for the static act modes; cfg: dispatch.Config."""
    x2 = rows(x)
    m, k, n = x2.shape[0], x2.shape[1], weight.shape[0]
    y = torch.empty(m, n, dtype=x.dtype, device=x.device)
    grid = (triton.cdiv(m, cfg.block_m), triton.cdiv(n, cfg.block_n))
    dummy = weight_scale
    _w8_kernel[grid](x2, weight, weight_scale, input_scale if input_scale is not None else dummy,
                     pqs if pqs is not None else dummy, bias if bias is not None else dummy, y, m, n, k,
                     x2.stride(0), weight.stride(0), y.stride(0), ACT=ACT[act], W_INT8=weight.dtype == torch.int8,
                     W_ROWS=per_row, HAS_PQS=pqs is not None, HAS_BIAS=bias is not None, DOT=cfg.kind == "dot",
                     BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, num_warps=cfg.num_warps,
                     num_stages=cfg.num_stages)
    return y.view(*x.shape[:-1], n)
