"""Fused mixture-of-experts in Triton: router top-k, tokens sorted by expert, two grouped GEMMs, no host sync.

Why: the reference loop in moe.py runs ~6 kernels per active expert plus a `.tolist()` host sync per layer, so an
MoE model can neither decode fast nor be captured in a CUDA graph. Here one MoE layer is four launches whose
shapes depend only on (T, top-k, E), never on the routing:
  1. `align`: the T*K (token, slot) assignments grouped by expert, each group padded to a multiple of BLOCK_M
     (vLLM's `moe_align_block_size`; one Triton program for small batches, torch ops for large ones);
  2. gate_up GEMM [E, 2I, H] per BLOCK_M rows of one expert, SiLU/GeLU(gate) * up in the epilogue -> [T*K, I];
  3. down GEMM [E, H, I], times the routing weight in the epilogue -> [T*K, H];
  4. the sum over the K slots (torch).
Rounding follows the reference loop: each GEMM result is rounded to the activation dtype before the activation /
the routing weight, as `x @ w.t()` does there. Imported lazily (imports triton) by moe.py on the first CUDA call.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import triton
import triton.language as tl


class Config(NamedTuple):
    block_m: int       # rows (assignments) per program; every expert's group is padded to a multiple of it
    block_n: int       # output columns per program (the gate_up GEMM: block_n // 2 gate + block_n // 2 up)
    block_k: int
    group_m: int       # programs that share a column block run together (L2 reuse of the expert weight tile)
    num_warps: int
    num_stages: int


BIG = 1 << 62
BUCKETS = (1, 4, 8, 16, 64, 128, 256, 512, 1024, BIG)     # largest token count T of each bucket
# (E, I, T bucket) -> Config, bf16/fp16: the fastest candidate per bucket in benchmarks/moe_bench.py on an H100 80GB
# HBM3 (2026-11-24, torch 2.11, triton 3.6; timed at T = the bucket's bound) for the Qwen3-30B-A3B (E=128, I=768)
# and Mixtral-8x7B (E=8, I=14336) layers. Other shapes use DEFAULT.
TABLE: dict[tuple[int, int, int], Config] = {
    (8, 14336, 1): Config(16, 128, 256, 1, 8, 3),
    (8, 14336, 4): Config(16, 128, 256, 1, 8, 3),
    (8, 14336, 8): Config(16, 128, 256, 1, 8, 3),
    (8, 14336, 16): Config(16, 128, 256, 1, 8, 3),
    (8, 14336, 64): Config(32, 256, 64, 8, 8, 3),
    (8, 14336, 128): Config(64, 256, 64, 8, 8, 4),
    (8, 14336, 256): Config(64, 256, 64, 8, 8, 4),
    (8, 14336, 512): Config(128, 256, 64, 8, 8, 4),
    (8, 14336, 1024): Config(128, 256, 64, 8, 8, 4),
    (8, 14336, BIG): Config(128, 256, 64, 16, 8, 3),
    (128, 768, 1): Config(16, 128, 64, 1, 4, 5),
    (128, 768, 4): Config(16, 128, 128, 1, 4, 3),
    (128, 768, 8): Config(16, 128, 256, 1, 8, 3),
    (128, 768, 16): Config(16, 128, 256, 1, 8, 3),
    (128, 768, 64): Config(16, 128, 128, 1, 4, 3),
    (128, 768, 128): Config(16, 64, 128, 1, 4, 4),
    (128, 768, 256): Config(16, 128, 128, 1, 4, 3),
    (128, 768, 512): Config(64, 256, 64, 8, 8, 4),
    (128, 768, 1024): Config(64, 256, 64, 8, 8, 4),
    (128, 768, BIG): Config(128, 256, 64, 8, 8, 4),
}
# T bucket -> Config for any other shape: vLLM's H100 starting points for E=128, I=768; within 0-5% of the best
# measured for Qwen3-30B-A3B, up to 28% slower for Mixtral at T = 64..512.
DEFAULT: dict[int, Config] = {
    1: Config(16, 64, 128, 1, 4, 4),
    4: Config(16, 64, 128, 1, 4, 4),
    8: Config(16, 64, 128, 1, 4, 4),
    16: Config(16, 64, 128, 1, 4, 3),
    64: Config(16, 128, 128, 1, 4, 3),
    128: Config(16, 128, 128, 1, 4, 3),
    256: Config(32, 128, 64, 8, 4, 3),
    512: Config(64, 128, 64, 8, 4, 3),
    1024: Config(64, 256, 64, 8, 8, 4),
    BIG: Config(128, 256, 64, 8, 8, 4),
}
SMALL_ALIGN = 1024   # assignments handled by the one-program Triton sort; more go through torch ops


def t_bucket(num_tokens: int) -> int:
    return next(b for b in BUCKETS if num_tokens <= b)


def config_for(num_tokens: int, num_experts: int, intermediate: int) -> Config:
    b = t_bucket(num_tokens)
    return TABLE.get((num_experts, intermediate, b), DEFAULT[b])


def max_blocks(num_assign: int, num_experts: int, block_m: int) -> int:
    """Upper bound on padded BLOCK_M-row groups: every non-empty expert (at most min(E, T*K)) pads < BLOCK_M rows."""
    return triton.cdiv(num_assign + min(num_experts, num_assign) * (block_m - 1), block_m)


@triton.jit
def _run_length(key_a, n_a, key_b, n_b):
    """Scan operator over a sorted key array: how many equal keys end here (associative on sorted input)."""
    return key_b, tl.where(key_a == key_b, n_a + n_b, n_b)


@triton.jit(do_not_specialize=["N"])     # why: one compile per NP, not per token count (graph buckets)
def _align_kernel(ids_ptr, sorted_ptr, expert_ptr, num_post_ptr, N, E, BLOCK_M: tl.constexpr, NP: tl.constexpr):
    """Grid (1,): the N assignments (expert ids, flattened [T, K]) sorted by expert, stable, groups padded.

    Writes sorted_ptr[slot] = assignment id (N = padding), expert_ptr[block] for every used block, and
    num_post_ptr[0] = the padded total. Blocks past the total are left unwritten (the GEMMs never read them)."""
    offs = tl.arange(0, NP)
    ok = offs < N
    e = tl.load(ids_ptr + offs, mask=ok, other=E).to(tl.int32)           # padding lanes sort last, as expert E
    key = tl.sort(e * NP + offs)                                          # by expert, then position: stable
    es = key // NP
    src = key % NP
    ones = tl.full([NP], 1, tl.int32)
    _, upto = tl.associative_scan((es, ones), 0, _run_length)            # 1-based rank within its expert
    _, rest = tl.associative_scan((tl.flip(es, 0), ones), 0, _run_length)
    rest = tl.flip(rest, 0)                                               # elements from here to the group's end
    valid = es < E
    size = upto + rest - 1
    pad = tl.where(valid & (rest == 1), (BLOCK_M - size % BLOCK_M) % BLOCK_M, 0)   # on each group's last element
    dest = offs + tl.cumsum(pad, 0) - pad
    tl.store(sorted_ptr + dest, src, mask=valid)
    j = tl.arange(0, BLOCK_M)
    fill = tl.full([NP, BLOCK_M], 0, tl.int32) + N
    tl.store(sorted_ptr + dest[:, None] + 1 + j[None, :], fill, mask=j[None, :] < pad[:, None])
    tl.store(expert_ptr + dest // BLOCK_M, es, mask=valid & ((upto - 1) % BLOCK_M == 0))
    tl.store(num_post_ptr, N + tl.sum(pad, 0))


def _align_torch(flat: torch.Tensor, num_experts: int, block_m: int, slots: int, blocks: int
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Same outputs as `_align_kernel` with device-side torch ops (no bincount: it syncs to size its output)."""
    n, dev = flat.numel(), flat.device
    ids = flat.long()
    counts = torch.zeros(num_experts, dtype=torch.long, device=dev).scatter_add_(0, ids, torch.ones_like(ids))
    padded = (counts + block_m - 1) // block_m * block_m                                # [E]
    pad_end = padded.cumsum(0)
    order = torch.argsort(ids, stable=True)                                             # [N]
    e_sorted = ids[order]
    rank = torch.arange(n, device=dev) - (counts.cumsum(0) - counts)[e_sorted]
    sorted_ids = torch.full((slots,), n, dtype=torch.int32, device=dev)
    sorted_ids[(pad_end - padded)[e_sorted] + rank] = order.to(torch.int32)
    starts = torch.arange(blocks, device=dev) * block_m
    expert_ids = torch.searchsorted(pad_end, starts, right=True).clamp_(max=num_experts - 1).to(torch.int32)
    return sorted_ids, expert_ids, pad_end[-1:].to(torch.int32)


def align(topk_ids: torch.Tensor, num_experts: int, block_m: int, small: int | None = None
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """topk_ids [T, K] -> (sorted assignment ids [blocks * block_m] int32 (T*K = padding), expert of each block
    [blocks] int32, padded total [1] int32). Shapes depend only on T*K, E and block_m."""
    n = topk_ids.numel()
    blocks = max_blocks(n, num_experts, block_m)
    flat = topk_ids.reshape(-1)
    if n > (SMALL_ALIGN if small is None else small):
        return _align_torch(flat, num_experts, block_m, blocks * block_m, blocks)
    dev = topk_ids.device
    sorted_ids = torch.empty(blocks * block_m, dtype=torch.int32, device=dev)
    expert_ids = torch.empty(blocks, dtype=torch.int32, device=dev)
    num_post = torch.empty(1, dtype=torch.int32, device=dev)
    np_ = triton.next_power_of_2(max(n, 16))
    _align_kernel[(1,)](flat, sorted_ids, expert_ids, num_post, n, num_experts, BLOCK_M=block_m, NP=np_,
                        num_warps=4 if np_ <= 256 else 8)
    return sorted_ids, expert_ids, num_post


@triton.jit(do_not_specialize=["num_valid", "num_pid_m"])   # why: one compile per config, not per batch size
def _moe_gemm_kernel(a_ptr, b_ptr, c_ptr, w_ptr, sorted_ptr, expert_ptr, num_post_ptr, N, K, num_valid, num_pid_m,
                     stride_am, stride_be, stride_bn, stride_cm, TOP_K: tl.constexpr, GATED: tl.constexpr,
                     GELU: tl.constexpr, MUL_W: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
                     BLOCK_K: tl.constexpr, GROUP_M: tl.constexpr, EVEN_K: tl.constexpr):
    """Grid (num_pid_m * cdiv(N, BLOCK_N),): C[rows] (N cols) = A[rows // TOP_K] @ B[expert][cols]^T for one padded
    block of rows of one expert. GATED: B holds [gate; up] (2N rows), C = act(gate) * up. MUL_W: C *= w[rows]."""
    pid = tl.program_id(0)
    num_pid_n = tl.cdiv(N, BLOCK_N)
    in_group = GROUP_M * num_pid_n
    first_m = (pid // in_group) * GROUP_M
    size_m = min(num_pid_m - first_m, GROUP_M)
    pid_m = first_m + (pid % in_group) % size_m
    pid_n = (pid % in_group) // size_m
    if pid_m * BLOCK_M >= tl.load(num_post_ptr):
        return                                                    # an unused block: the bound was not reached
    rows = tl.load(sorted_ptr + pid_m * BLOCK_M + tl.arange(0, BLOCK_M))          # assignment ids [BM]
    row_ok = rows < num_valid
    expert = tl.load(expert_ptr + pid_m).to(tl.int64)
    offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rn = tl.minimum(offs_n, N - 1)               # clamp instead of masking: loads stay unmasked along rows and n
    ra = tl.minimum(rows, num_valid - 1) // TOP_K
    offs_k = tl.arange(0, BLOCK_K)
    a_ptrs = a_ptr + ra[:, None].to(tl.int64) * stride_am + offs_k[None, :]                       # [BM, BK]
    b_ptrs = b_ptr + expert * stride_be + rn[None, :].to(tl.int64) * stride_bn + offs_k[:, None]  # [BK, BN]
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    acc_up = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        if EVEN_K:
            a = tl.load(a_ptrs)
            b = tl.load(b_ptrs)
        else:
            k_ok = (k0 + offs_k) < K
            a = tl.load(a_ptrs, mask=k_ok[None, :], other=0.0)
            b = tl.load(b_ptrs, mask=k_ok[:, None], other=0.0)
        acc = tl.dot(a, b, acc)
        if GATED:
            if EVEN_K:
                b_up = tl.load(b_ptrs + N * stride_bn)
            else:
                b_up = tl.load(b_ptrs + N * stride_bn, mask=k_ok[:, None], other=0.0)
            acc_up = tl.dot(a, b_up, acc_up)
        a_ptrs += BLOCK_K
        b_ptrs += BLOCK_K
    dt = c_ptr.dtype.element_ty
    y = acc.to(dt).to(tl.float32)                                   # the reference rounds each GEMM to the dtype
    if GATED:
        if GELU:
            inner = 0.7978845608028654 * (y + 0.044715 * y * y * y)
            y = 0.5 * y * (1.0 + (2.0 / (1.0 + tl.exp(-2.0 * inner)) - 1.0))
        else:
            y = y / (1.0 + tl.exp(-y))
        y = y.to(dt).to(tl.float32) * acc_up.to(dt).to(tl.float32)
    if MUL_W:
        y = y * tl.load(w_ptr + rows, mask=row_ok, other=0.0).to(tl.float32)[:, None]
    mask = row_ok[:, None] & (offs_n[None, :] < N)
    tl.store(c_ptr + rows[:, None].to(tl.int64) * stride_cm + offs_n[None, :], y.to(dt), mask=mask)


def _gemm(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, w: torch.Tensor | None, routing, n: int, top_k: int,
          gated: bool, gelu: bool, cfg: Config) -> None:
    sorted_ids, expert_ids, num_post = routing
    k = a.shape[1]
    block_n = cfg.block_n // 2 if gated else cfg.block_n
    num_pid_m = expert_ids.numel()
    grid = (num_pid_m * triton.cdiv(n, block_n),)
    _moe_gemm_kernel[grid](a, b, c, w if w is not None else c, sorted_ids, expert_ids, num_post, n, k, c.shape[0],
                           num_pid_m, a.stride(0), b.stride(0), b.stride(1), c.stride(0), TOP_K=top_k, GATED=gated,
                           GELU=gelu, MUL_W=w is not None, BLOCK_M=cfg.block_m, BLOCK_N=block_n,
                           BLOCK_K=cfg.block_k, GROUP_M=cfg.group_m, EVEN_K=k % cfg.block_k == 0,
                           num_warps=cfg.num_warps, num_stages=cfg.num_stages)


def fused_experts(x: torch.Tensor, w13: torch.Tensor, w2: torch.Tensor, topk_ids: torch.Tensor,
                  topk_weights: torch.Tensor, gelu: bool = False, cfg: Config | None = None) -> torch.Tensor:
    """x [T, H], w13 [E, 2I, H] (gate rows first), w2 [E, H, I], topk_ids / topk_weights [T, K] -> [T, H]."""
    t, h = x.shape
    e, two_i, _ = w13.shape
    k = topk_ids.shape[1]
    if t == 0:
        return torch.zeros_like(x)
    cfg = cfg or config_for(t, e, two_i // 2)
    x, w13, w2 = _rows(x), _rows(w13), _rows(w2)
    routing = align(topk_ids, e, cfg.block_m)
    inter = torch.empty(t * k, two_i // 2, dtype=x.dtype, device=x.device)                 # [T*K, I]
    _gemm(x, w13, inter, None, routing, two_i // 2, k, True, gelu, cfg)
    out = torch.empty(t * k, h, dtype=x.dtype, device=x.device)                            # [T*K, H]
    _gemm(inter, w2, out, topk_weights.reshape(-1), routing, h, 1, False, False, cfg)
    return out.view(t, k, h).sum(dim=1)


@triton.jit
def _topk_softmax_kernel(logits_ptr, w_ptr, ids_ptr, stride_t, E, TOP_K: tl.constexpr, K_PAD: tl.constexpr,
                         RENORM: tl.constexpr, BLOCK_E: tl.constexpr):
    """Grid (T,): fp32 softmax over E logits, the TOP_K largest (lowest index on ties), optionally renormalised."""
    t = tl.program_id(0)
    offs = tl.arange(0, BLOCK_E)
    x = tl.load(logits_ptr + t * stride_t + offs, mask=offs < E, other=float("-inf")).to(tl.float32)
    p = tl.exp(x - tl.max(x, 0))
    p = tl.where(offs < E, p / tl.sum(p, 0), -1.0)
    slots = tl.arange(0, K_PAD)
    vals = tl.zeros([K_PAD], dtype=tl.float32)
    idx = tl.zeros([K_PAD], dtype=tl.int32)
    for k in tl.static_range(TOP_K):
        best = tl.max(p, 0)
        pick = tl.min(tl.where(p == best, offs, BLOCK_E), 0)
        vals = tl.where(slots == k, best, vals)
        idx = tl.where(slots == k, pick, idx)
        p = tl.where(offs == pick, -1.0, p)
    if RENORM:
        vals = vals / tl.sum(vals, 0)
    tl.store(w_ptr + t * TOP_K + slots, vals.to(w_ptr.dtype.element_ty), mask=slots < TOP_K)
    tl.store(ids_ptr + t * TOP_K + slots, idx, mask=slots < TOP_K)


def topk_softmax(logits: torch.Tensor, top_k: int, renormalize: bool, out_dtype: torch.dtype
                 ) -> tuple[torch.Tensor, torch.Tensor]:
    """Router logits [T, E] -> (weights [T, K] in out_dtype, expert ids [T, K] int32): softmax (fp32) + top-k
    (+ renormalise) in one launch instead of five."""
    t, e = logits.shape
    weights = torch.empty(t, top_k, dtype=out_dtype, device=logits.device)
    ids = torch.empty(t, top_k, dtype=torch.int32, device=logits.device)
    if t:
        logits = _rows(logits)
        _topk_softmax_kernel[(t,)](logits, weights, ids, logits.stride(0), e, TOP_K=top_k,
                                   K_PAD=triton.next_power_of_2(top_k), RENORM=renormalize,
                                   BLOCK_E=triton.next_power_of_2(e), num_warps=1 if e <= 256 else 4)
    return weights, ids


def _rows(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()
