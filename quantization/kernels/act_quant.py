"""Large-M W8A8 paths: one Triton kernel quantizes the activation, then cuBLAS (`torch._scaled_mm` / `_int_mm`).

The quantize kernel fuses what used to be 3-4 launches (x * pre_quant_scale, / scale, clamp, cast, pad); per-token
FP8 (FP8RowWise) also writes each row's scale (amax / 448) for `_scaled_mm`'s rowwise scaling. The output has its
rows padded to a multiple of 16 for `_scaled_mm`; padded rows are left unwritten and their outputs sliced away (rows
are independent). Imported lazily.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ember.quantization.kernels.tiles import rows
from ember.quantization.kernels.w8 import ACT, _quantize_act


@triton.jit
def _act_quant_kernel(x_ptr, p_ptr, sx_ptr, q_ptr, K, stride_xm, stride_qm, ACT: tl.constexpr,
                      HAS_PQS: tl.constexpr, BLOCK_K: tl.constexpr):
    """Grid (M,): row m of x (times pre_quant_scale) -> q[m], e4m3 (ACT 1) or int8 (ACT 2) with the static scale
    sx[0], or e4m3 with the row's own scale (ACT 3: max(amax / 448, 1e-12), as w8.py; written to sx[m])."""
    m = tl.program_id(0)
    offs = tl.arange(0, BLOCK_K)
    x_row = x_ptr + m.to(tl.int64) * stride_xm
    if ACT == 3:   # a first pass over the row for its amax (a few KB, from L2)
        amax = 0.0
        for k0 in range(0, K, BLOCK_K):
            x = tl.load(x_row + k0 + offs, mask=k0 + offs < K, other=0.0)
            amax = tl.maximum(amax, tl.max(tl.abs(x.to(tl.float32)), axis=0))
        s_x = tl.maximum(amax / 448.0, 1e-12)
        tl.store(sx_ptr + m, s_x)
    else:
        s_x = tl.load(sx_ptr)
    for k0 in range(0, K, BLOCK_K):
        ok = k0 + offs < K
        x = tl.load(x_row + k0 + offs, mask=ok, other=0.0)
        if HAS_PQS:
            s = tl.load(p_ptr + k0 + offs, mask=ok, other=0.0).to(x.dtype).to(tl.float32)
            x = (x.to(tl.float32) * s).to(x.dtype)
        q = _quantize_act(x, s_x, ACT)
        tl.store(q_ptr + m.to(tl.int64) * stride_qm + k0 + offs, q.to(q_ptr.dtype.element_ty), mask=ok)


def quantize_act(x2: torch.Tensor, act: str, input_scale: torch.Tensor, pqs: torch.Tensor | None,
                 pad_to: int = 1) -> torch.Tensor:
    """x2 [M, K] -> q [M rounded up to pad_to, K] e4m3 ("fp8", "fp8_token") or int8 ("int8"); input_scale read at
    [0], or ("fp8_token") written: fp32 [>= M] per-row scales."""
    m, k = x2.shape
    rows = -(-m // pad_to) * pad_to
    q = torch.empty(rows, k, dtype=torch.int8 if act == "int8" else torch.float8_e4m3fn, device=x2.device)
    _act_quant_kernel[(m,)](x2, pqs if pqs is not None else input_scale, input_scale, q, k, x2.stride(0),
                            q.stride(0), ACT=ACT[act], HAS_PQS=pqs is not None,
                            BLOCK_K=min(2048, triton.next_power_of_2(k)), num_warps=4)
    return q


def fp8_scaled_mm(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor,
                  bias: torch.Tensor | None, pqs: torch.Tensor | None = None) -> torch.Tensor:
    """FP8 W8A8 (per-tensor scales, read at [0]) on FP8 tensor cores: quantize kernel (x * pqs first, if given) +
    `torch._scaled_mm`."""
    x2 = rows(x)
    m, n = x2.shape[0], weight.shape[0]
    out_dtype = x.dtype if x.dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
    q = quantize_act(x2, "fp8", input_scale, pqs, pad_to=16)   # _scaled_mm wants M a multiple of 16
    y = torch._scaled_mm(q, weight.t(), scale_a=input_scale[:1].reshape(()), scale_b=weight_scale[:1].reshape(()),
                         bias=bias, out_dtype=out_dtype)
    return y[:m].to(x.dtype).view(*x.shape[:-1], n)


def fp8_rowwise_scaled_mm(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor,
                          bias: torch.Tensor | None) -> torch.Tensor:
    """FP8RowWise (per-token activation, per-channel weight scales) on FP8 tensor cores: the quantize kernel writes
    each row's scale, then `torch._scaled_mm` with rowwise scales (bf16 out, as cuBLAS rowwise scaling requires)."""
    x2 = rows(x)
    m, n = x2.shape[0], weight.shape[0]
    pad = -(-m // 16) * 16
    s_x = torch.empty(pad, 1, dtype=torch.float32, device=x.device)   # the kernel writes rows < M (padding: sliced)
    q = quantize_act(x2, "fp8_token", s_x, None, pad_to=16)
    fused_bias = bias if bias is not None and bias.dtype == torch.bfloat16 else None
    y = torch._scaled_mm(q, weight.t(), scale_a=s_x, scale_b=weight_scale.float().view(1, n), bias=fused_bias,
                         out_dtype=torch.bfloat16)[:m].to(x.dtype)
    if bias is not None and fused_bias is None:
        y = y + bias.to(x.dtype)
    return y.view(*x.shape[:-1], n)


def int8_int_mm(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor, input_scale: torch.Tensor,
                pqs: torch.Tensor | None, bias: torch.Tensor | None) -> torch.Tensor:
    """W8A8 SmoothQuant on INT8 tensor cores: `torch._int_mm` (M > 16, K and N multiples of 8), scales after."""
    x2 = rows(x)
    n = weight.shape[0]
    q = quantize_act(x2, "int8", input_scale, pqs)
    acc = torch._int_mm(q, weight.t())                                                # [M, N] int32
    y = acc.float().mul_(input_scale[:1] * weight_scale[None, :])
    if bias is not None:
        y += bias
    return y.to(x.dtype).view(*x.shape[:-1], n)
