"""Triton kernels for the small per-token ops of a decoder layer: (residual +) RMSNorm, rotary, SiLU-and-mul.

Why: at batch 1 (Qwen3-8B shape, H100, CUDA graph) these ops ran as ~1,500 tiny PyTorch kernels taking 3.3 ms of a
9.8 ms step (docs/performance.md); one kernel per op brings them to ~0.5 ms. Each keeps the rounding points of the
PyTorch code it replaces (cast to the activation dtype where that code casts).
Imported lazily on the first CUDA call, so CPU-only processes (and the interpreter tests) never import triton.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ember.layers.gemv_kernels import act_times


@triton.jit
def _rmsnorm_kernel(x_ptr, res_ptr, w_ptr, out_ptr, res_out_ptr, stride_xa, stride_xb, stride_ra, stride_rb,
                    B, N, eps, HAS_RES: tl.constexpr, GEMMA: tl.constexpr, BLOCK: tl.constexpr):
    """Grid (A * B): one row of N. x rows may be strided ([A, B, N] views of a fused qkv output)."""
    row = tl.program_id(0)
    a = row // B
    b = row % B
    offs = tl.arange(0, BLOCK)
    ok = offs < N
    x = tl.load(x_ptr + a * stride_xa + b * stride_xb + offs, mask=ok, other=0.0)
    if HAS_RES:
        r = tl.load(res_ptr + a * stride_ra + b * stride_rb + offs, mask=ok, other=0.0)
        x = (x.to(tl.float32) + r.to(tl.float32)).to(x_ptr.dtype.element_ty)     # x + residual, in x's dtype
        tl.store(res_out_ptr + row * N + offs, x, mask=ok)
    xf = x.to(tl.float32)
    inv = 1.0 / tl.sqrt(tl.sum(xf * xf, 0) / N + eps)
    w = tl.load(w_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    if GEMMA:
        y = xf * inv * (1.0 + w)
    else:
        y = (xf * inv).to(x_ptr.dtype.element_ty).to(tl.float32) * w            # Llama: cast, then scale
    tl.store(out_ptr + row * N + offs, y.to(out_ptr.dtype.element_ty), mask=ok)


def rmsnorm(x: torch.Tensor, weight: torch.Tensor, eps: float, residual: torch.Tensor | None = None,
            gemma: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """x [..., N] (last dim contiguous) -> norm(x) or (norm(x + residual), x + residual), new contiguous tensors."""
    shape, n = x.shape, x.shape[-1]
    x3 = _as_3d(x)
    a, b = x3.shape[0], x3.shape[1]
    out = torch.empty(shape, dtype=x.dtype, device=x.device)
    res3 = _as_3d(residual) if residual is not None else x3
    res_out = torch.empty(shape, dtype=x.dtype, device=x.device) if residual is not None else out
    if a * b:
        _rmsnorm_kernel[(a * b,)](x3, res3, weight, out, res_out, x3.stride(0), x3.stride(1), res3.stride(0),
                                  res3.stride(1), b, n, eps, HAS_RES=residual is not None, GEMMA=gemma,
                                  BLOCK=triton.next_power_of_2(n), num_warps=_warps(n))
    return out if residual is None else (out, res_out)


@triton.jit
def _rope_kernel(q_ptr, k_ptr, q_out_ptr, k_out_ptr, pos_ptr, cos_ptr, sin_ptr, stride_qt, stride_kt,
                 HQ: tl.constexpr, HK: tl.constexpr, D: tl.constexpr, ROT: tl.constexpr, HALF_PAD: tl.constexpr,
                 REST_PAD: tl.constexpr):
    """Grid (T, HQ + HK): neox half-split rotation of one head; dims past ROT are copied."""
    t = tl.program_id(0)
    h = tl.program_id(1)
    if h < HQ:
        src = q_ptr + t * stride_qt + h * D
        dst = q_out_ptr + (t * HQ + h) * D
    else:
        src = k_ptr + t * stride_kt + (h - HQ) * D
        dst = k_out_ptr + (t * HK + h - HQ) * D
    half: tl.constexpr = ROT // 2
    offs = tl.arange(0, HALF_PAD)
    ok = offs < half
    pos = tl.load(pos_ptr + t)
    dt = q_out_ptr.dtype.element_ty
    # cos/sin go through the activation dtype first, as the PyTorch path does (`.to(q.dtype)`).
    cos = tl.load(cos_ptr + pos * ROT + offs, mask=ok, other=0.0).to(dt).to(tl.float32)
    sin = tl.load(sin_ptr + pos * ROT + offs, mask=ok, other=0.0).to(dt).to(tl.float32)
    x1 = tl.load(src + offs, mask=ok, other=0.0).to(tl.float32)
    x2 = tl.load(src + half + offs, mask=ok, other=0.0).to(tl.float32)
    tl.store(dst + offs, (x1 * cos - x2 * sin).to(dt), mask=ok)
    tl.store(dst + half + offs, (x2 * cos + x1 * sin).to(dt), mask=ok)
    if ROT < D:
        offs_r = tl.arange(0, REST_PAD)
        ok_r = offs_r < D - ROT
        tl.store(dst + ROT + offs_r, tl.load(src + ROT + offs_r, mask=ok_r), mask=ok_r)


def rotary(positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
           head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """q [T, Hq*D], k [T, Hkv*D] (rows may be strided) -> new contiguous rotated q, k; cos/sin [P, rot] fp32."""
    t = q.shape[0]
    hq, hk, rot = q.shape[1] // head_dim, k.shape[1] // head_dim, cos.shape[1]
    q_out = torch.empty(t, hq * head_dim, dtype=q.dtype, device=q.device)
    k_out = torch.empty(t, hk * head_dim, dtype=k.dtype, device=k.device)
    if t:
        q, k = _row_major(q), _row_major(k)
        _rope_kernel[(t, hq + hk)](q, k, q_out, k_out, positions, cos, sin, q.stride(0), k.stride(0),
                                   HQ=hq, HK=hk, D=head_dim, ROT=rot, HALF_PAD=triton.next_power_of_2(rot // 2),
                                   REST_PAD=triton.next_power_of_2(max(head_dim - rot, 1)), num_warps=1)
    return q_out, k_out


@triton.jit
def _qk_norm_rope_kernel(q_ptr, k_ptr, q_out_ptr, k_out_ptr, qw_ptr, kw_ptr, pos_ptr, cos_ptr, sin_ptr, stride_qt,
                         stride_kt, eps, HQ: tl.constexpr, HK: tl.constexpr, D: tl.constexpr, ROT: tl.constexpr,
                         HALF_PAD: tl.constexpr, REST_PAD: tl.constexpr, GEMMA: tl.constexpr):
    """Grid (T, HQ + HK): per-head RMSNorm (q_norm / k_norm weights) then neox rotation of one head, one pass.

    Rounding as the two kernels it replaces: the norm's output is rounded to the activation dtype, rope reads it."""
    t = tl.program_id(0)
    h = tl.program_id(1)
    if h < HQ:
        src = q_ptr + t * stride_qt + h * D
        dst = q_out_ptr + (t * HQ + h) * D
        w_ptr = qw_ptr
    else:
        src = k_ptr + t * stride_kt + (h - HQ) * D
        dst = k_out_ptr + (t * HK + h - HQ) * D
        w_ptr = kw_ptr
    half: tl.constexpr = ROT // 2
    dt = q_out_ptr.dtype.element_ty
    offs = tl.arange(0, HALF_PAD)
    ok = offs < half
    x1 = tl.load(src + offs, mask=ok, other=0.0).to(tl.float32)
    x2 = tl.load(src + half + offs, mask=ok, other=0.0).to(tl.float32)
    ss = tl.sum(x1 * x1, 0) + tl.sum(x2 * x2, 0)
    if ROT < D:
        offs_r = tl.arange(0, REST_PAD)
        ok_r = offs_r < D - ROT
        xr = tl.load(src + ROT + offs_r, mask=ok_r, other=0.0).to(tl.float32)
        ss += tl.sum(xr * xr, 0)
    inv = 1.0 / tl.sqrt(ss / D + eps)
    w1 = tl.load(w_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    w2 = tl.load(w_ptr + half + offs, mask=ok, other=0.0).to(tl.float32)
    if GEMMA:
        n1 = (x1 * inv * (1.0 + w1)).to(dt).to(tl.float32)
        n2 = (x2 * inv * (1.0 + w2)).to(dt).to(tl.float32)
    else:
        n1 = ((x1 * inv).to(dt).to(tl.float32) * w1).to(dt).to(tl.float32)
        n2 = ((x2 * inv).to(dt).to(tl.float32) * w2).to(dt).to(tl.float32)
    pos = tl.load(pos_ptr + t)
    cos = tl.load(cos_ptr + pos * ROT + offs, mask=ok, other=0.0).to(dt).to(tl.float32)
    sin = tl.load(sin_ptr + pos * ROT + offs, mask=ok, other=0.0).to(dt).to(tl.float32)
    tl.store(dst + offs, (n1 * cos - n2 * sin).to(dt), mask=ok)
    tl.store(dst + half + offs, (n2 * cos + n1 * sin).to(dt), mask=ok)
    if ROT < D:
        wr = tl.load(w_ptr + ROT + offs_r, mask=ok_r, other=0.0).to(tl.float32)
        if GEMMA:
            nr = xr * inv * (1.0 + wr)
        else:
            nr = (xr * inv).to(dt).to(tl.float32) * wr
        tl.store(dst + ROT + offs_r, nr.to(dt), mask=ok_r)


def qk_norm_rotary(positions: torch.Tensor, q: torch.Tensor, k: torch.Tensor, q_weight: torch.Tensor,
                   k_weight: torch.Tensor, eps: float, gemma: bool, cos: torch.Tensor, sin: torch.Tensor,
                   head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """rotary(q_norm(q), k_norm(k)) per head in one launch: q [T, Hq*D], k [T, Hkv*D] (rows may be strided) ->
    new contiguous q, k. Same values as `rmsnorm` per head followed by `rotary`."""
    t = q.shape[0]
    hq, hk, rot = q.shape[1] // head_dim, k.shape[1] // head_dim, cos.shape[1]
    q_out = torch.empty(t, hq * head_dim, dtype=q.dtype, device=q.device)
    k_out = torch.empty(t, hk * head_dim, dtype=k.dtype, device=k.device)
    if t:
        q, k = _row_major(q), _row_major(k)
        _qk_norm_rope_kernel[(t, hq + hk)](q, k, q_out, k_out, q_weight, k_weight, positions, cos, sin,
                                           q.stride(0), k.stride(0), eps, HQ=hq, HK=hk, D=head_dim, ROT=rot,
                                           HALF_PAD=triton.next_power_of_2(rot // 2),
                                           REST_PAD=triton.next_power_of_2(max(head_dim - rot, 1)), GEMMA=gemma,
                                           num_warps=1)
    return q_out, k_out


@triton.jit
def _act_mul_kernel(x_ptr, out_ptr, stride_xt, I, GELU: tl.constexpr, BLOCK: tl.constexpr):
    """Grid (T, cdiv(I, BLOCK)): out = act(gate) * up, act rounded to the dtype before the product (as PyTorch)."""
    t = tl.program_id(0)
    offs = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    ok = offs < I
    g = tl.load(x_ptr + t * stride_xt + offs, mask=ok, other=0.0).to(tl.float32)
    u = tl.load(x_ptr + t * stride_xt + I + offs, mask=ok, other=0.0).to(tl.float32)
    tl.store(out_ptr + t * I + offs, act_times(g, u, 2 if GELU else 1, out_ptr.dtype.element_ty), mask=ok)


def act_and_mul(x: torch.Tensor, gelu: bool = False) -> torch.Tensor:
    """[T, 2I] -> [T, I]."""
    x = _row_major(x.reshape(-1, x.shape[-1]) if x.dim() != 2 else x)
    t, i = x.shape[0], x.shape[1] // 2
    out = torch.empty(t, i, dtype=x.dtype, device=x.device)
    block = 1024
    if t:
        _act_mul_kernel[(t, triton.cdiv(i, block))](x, out, x.stride(0), i, GELU=gelu, BLOCK=block, num_warps=4)
    return out


def _as_3d(x: torch.Tensor) -> torch.Tensor:
    """[..., N] -> an [A, B, N] view with unit last stride (copies only when no such view exists)."""
    if x.stride(-1) != 1:
        x = x.contiguous()
    if x.dim() == 1:
        return x.view(1, 1, -1)
    if x.dim() == 2:
        return x.unsqueeze(1)
    if x.dim() == 3:
        return x
    return x.reshape(-1, 1, x.shape[-1])


def _row_major(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def _warps(n: int) -> int:
    return 1 if n <= 256 else 4 if n <= 4096 else 8
