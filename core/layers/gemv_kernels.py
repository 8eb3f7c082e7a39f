"""Triton kernels behind ember.layers.gemv (imports triton; loaded lazily). See gemv.py for the why."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _gated(x_ptrs, K, mask, ACT: tl.constexpr, EVEN_K: tl.constexpr):
    """act(gate) * up for a [BM, BK] tile of a [gate | up] row pair (up K columns to the right), rounded like
    ember's act-and-mul kernel: act in the dtype, then the product in the dtype."""
    dt = x_ptrs.dtype.element_ty
    if EVEN_K:
        g = tl.load(x_ptrs).to(tl.float32)
        u = tl.load(x_ptrs + K).to(tl.float32)
    else:
        g = tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32)
        u = tl.load(x_ptrs + K, mask=mask, other=0.0).to(tl.float32)
    return act_times(g, u, ACT, dt)


@triton.jit
def act_times(g, u, ACT: tl.constexpr, dt: tl.constexpr):
    """act(g) * u for fp32 g, u as ember's act-and-mul kernel rounds it: act in dtype `dt`, then the product in `dt`.
    ACT 1: SiLU, 2: GeLU-tanh."""
    if ACT == 2:
        inner = 0.7978845608028654 * (g + 0.044715 * g * g * g)
        a = 0.5 * g * (1.0 + (2.0 / (1.0 + tl.exp(-2.0 * inner)) - 1.0))
    else:
        a = g / (1.0 + tl.exp(-g))
    return (a.to(dt).to(tl.float32) * u).to(dt)


@triton.jit
def _gemv_ew_kernel(x_ptr, w_ptr, b_ptr, y_ptr, M, N, K, stride_xm, stride_wn, stride_ym,
                    HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                    EVEN_K: tl.constexpr, ACT: tl.constexpr = 0):
    """Grid (cdiv(N, BLOCK_N),): rows [pid*BLOCK_N, +BLOCK_N) of y^T for all M (<= BLOCK_M) inputs.
    ACT 1 (SiLU) / 2 (GeLU-tanh): x rows are [gate | up] pairs of 2K and the input is act(gate) * up."""
    pid = tl.program_id(0)
    offs_n = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    rn = tl.minimum(offs_n, N - 1)               # clamp instead of masking: loads stay unmasked along n
    rm = tl.minimum(offs_m, M - 1)
    offs_k = tl.arange(0, BLOCK_K)
    w_ptrs = w_ptr + rn[:, None].to(tl.int64) * stride_wn + offs_k[None, :]          # [BN, BK]
    x_ptrs = x_ptr + rm[:, None] * stride_xm + offs_k[None, :]                      # [BM, BK]
    acc = tl.zeros((BLOCK_M, BLOCK_N, BLOCK_K), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        if EVEN_K:
            w = tl.load(w_ptrs)
            if ACT == 0:
                x = tl.load(x_ptrs)
            else:
                x = _gated(x_ptrs, K, None, ACT, True)
        else:
            ok = (k0 + offs_k) < K
            w = tl.load(w_ptrs, mask=ok[None, :], other=0.0)
            if ACT == 0:
                x = tl.load(x_ptrs, mask=ok[None, :], other=0.0)
            else:
                x = _gated(x_ptrs, K, ok[None, :], ACT, False)
        acc += x.to(tl.float32)[:, None, :] * w.to(tl.float32)[None, :, :]
        w_ptrs += BLOCK_K
        x_ptrs += BLOCK_K
    y = tl.sum(acc, axis=2)                                                          # [BM, BN]
    if HAS_BIAS:
        y += tl.load(b_ptr + rn).to(tl.float32)[None, :]
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    tl.store(y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :], y.to(y_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _gemv_dot_kernel(x_ptr, w_ptr, b_ptr, y_ptr, M, N, K, stride_xm, stride_wn, stride_ym,
                     HAS_BIAS: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
                     EVEN_K: tl.constexpr):
    """Grid (cdiv(N, BLOCK_N),): y[:, n-block] = x[BLOCK_M, K] @ W[n-block, K]^T on tensor cores."""
    pid = tl.program_id(0)
    offs_n = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    offs_m = tl.arange(0, BLOCK_M)
    rn = tl.minimum(offs_n, N - 1)
    rm = tl.minimum(offs_m, M - 1)
    offs_k = tl.arange(0, BLOCK_K)
    w_ptrs = w_ptr + rn[:, None].to(tl.int64) * stride_wn + offs_k[None, :]
    x_ptrs = x_ptr + rm[:, None] * stride_xm + offs_k[None, :]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        if EVEN_K:
            w = tl.load(w_ptrs)
            x = tl.load(x_ptrs)
        else:
            ok = (k0 + offs_k) < K
            w = tl.load(w_ptrs, mask=ok[None, :], other=0.0)
            x = tl.load(x_ptrs, mask=ok[None, :], other=0.0)
        acc = tl.dot(x, tl.trans(w), acc)
        w_ptrs += BLOCK_K
        x_ptrs += BLOCK_K
    if HAS_BIAS:
        acc += tl.load(b_ptr + rn).to(tl.float32)[None, :]
    mask = (offs_m[:, None] < M) & (offs_n[None, :] < N)
    tl.store(y_ptr + offs_m[:, None] * stride_ym + offs_n[None, :], acc.to(y_ptr.dtype.element_ty), mask=mask)


ACTS = {None: 0, "silu": 1, "gelu_tanh": 2}


def launch(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, cfg, out: torch.Tensor | None = None,
           act: str | None = None) -> torch.Tensor:
    """x [..., K] (M rows), weight [N, K] (unit last stride) -> y [..., N] (or written into `out` [M, N]).
    act "silu" / "gelu_tanh": x is [..., 2K] = [gate | up] and y = act(gate) * up @ W^T ("ew" kernel only)."""
    k = x.shape[-1] // 2 if act else x.shape[-1]
    n = weight.shape[0]
    x2 = x.reshape(-1, x.shape[-1])
    if x2.stride(-1) != 1:
        x2 = x2.contiguous()
    if weight.stride(-1) != 1:
        weight = weight.contiguous()
    m = x2.shape[0]
    y = out if out is not None else torch.empty(m, n, dtype=x.dtype, device=x.device)
    if m == 0:
        return y.view(*x.shape[:-1], n)
    grid = (triton.cdiv(n, cfg.block_n),)
    if act and cfg.kind != "ew":
        raise ValueError("the gated (act-and-mul) prologue runs in the 'ew' kernel only")
    if cfg.kind == "dot":
        block_m = 16
        kernel = _gemv_dot_kernel
        extra = {"num_stages": cfg.num_stages}
    else:
        block_m = triton.next_power_of_2(m)
        kernel = _gemv_ew_kernel
        extra = {"num_stages": cfg.num_stages, "ACT": ACTS[act]}
    if m > block_m:
        raise ValueError(f"skinny GEMM takes at most {block_m} rows, got {m}")
    kernel[grid](x2, weight, bias if bias is not None else weight, y, m, n, k, x2.stride(0), weight.stride(0),
                 y.stride(0), HAS_BIAS=bias is not None, BLOCK_M=block_m, BLOCK_N=cfg.block_n,
                 BLOCK_K=cfg.block_k, EVEN_K=k % cfg.block_k == 0, num_warps=cfg.num_warps, **extra)
    return y.view(*x.shape[:-1], n)
