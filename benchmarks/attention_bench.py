"""Paged attention speed: torch reference vs triton backend vs flex/SDPA ceilings, checked against the reference.

    python benchmarks/attention_bench.py                  # CUDA: Qwen3-8B attention shape, bf16
    python benchmarks/attention_bench.py --sweep          # also time kernel config variants
    TRITON_INTERPRET=1 python benchmarks/attention_bench.py --smoke   # CPU: tiny shapes, correctness only

Decode rows report achieved GB/s = K+V bytes read / time, against the 3.0 TB/s device copy ceiling measured on the
H100 (shared/gpu.md). The flex and SDPA rows read a *contiguous* cache (no block table): a ceiling, not a like
for like. Random inputs (values do not change the speed of attention).
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import replace

import torch

from ember.attention.metadata import build_metadata
from ember.attention.torch_backend import TorchAttentionBackend
from ember.attention.triton_backend import KernelConfig, TritonAttentionBackend
from ember.layers.attention import Attention

COPY_CEILING_GBS = 3000.0
ROWS: list[tuple] = []
FLEX_COMPILE_S = [0.0]


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.double(), want.double()
    return float((got - want).norm() / want.norm())


def bench(fn, device: str, graph: bool) -> float:
    """Median microseconds; `graph` replays a captured CUDA graph so launch overhead stays out."""
    if device != "cuda":
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e6
    import triton.testing as tt
    if graph:
        try:
            return tt.do_bench_cudagraph(fn, rep=100, return_mode="median") * 1e3
        except Exception as exc:  # noqa: BLE001 - report and fall back to eager timing
            print(f"  (cuda graph failed: {type(exc).__name__}: {str(exc)[:80]}; timing eagerly)")
    return tt.do_bench(fn, warmup=25, rep=100, return_mode="median") * 1e3


def make_step(b: int, ctx: int, q_len: int, hq: int, hkv: int, d: int, bs: int, dtype, device, seed: int = 0):
    """A batch of b sequences, each with ctx - q_len cached tokens and q_len new ones, on shuffled blocks."""
    g = torch.Generator(device="cpu").manual_seed(seed)
    per_seq = math.ceil(ctx / bs)
    num_blocks = b * per_seq + 1
    perm = torch.randperm(num_blocks, generator=g).tolist()
    tables = [perm[i * per_seq:(i + 1) * per_seq] for i in range(b)]
    cache = torch.randn(2, num_blocks, bs, hkv, d, device=device, dtype=dtype)
    t = b * q_len
    q = torch.randn(t, hq * d, device=device, dtype=dtype)
    k = torch.randn(t, hkv * d, device=device, dtype=dtype)
    v = torch.randn(t, hkv * d, device=device, dtype=dtype)
    return cache, tables, q, k, v


def run_case(label: str, b: int, ctx: int, q_len: int, args, sweep_cfgs, device: str, dtype) -> None:
    hq, hkv, d, bs = args.hq, args.hkv, args.d, args.block_size
    cache, tables, q, k, v = make_step(b, ctx, q_len, hq, hkv, d, bs, dtype, device)
    layer = Attention(0, hq, hkv, d, scale=d ** -0.5)
    ref_be, tri_be = TorchAttentionBackend(device, dtype), TritonAttentionBackend(device, dtype)
    ref_meta = build_metadata(ref_be, [cache], bs, [q_len] * b, [ctx] * b, tables, device)
    want = layer(q, k, v, ref_meta)
    tri_meta = build_metadata(tri_be, [cache], bs, [q_len] * b, [ctx] * b, tables, device)
    kv_bytes = 2 * b * ctx * hkv * d * cache.element_size()
    flops = 4 * b * hq * d * (q_len * (ctx - q_len) + q_len * (q_len + 1) / 2)

    def add(impl: str, us: float, err: float | None) -> None:
        gbs = kv_bytes / us / 1e3
        ROWS.append((label, impl, us, gbs, 100 * gbs / COPY_CEILING_GBS, flops / us / 1e6, err))
        e = "-" if err is None else f"{err:.1e}"
        print(f"  {label:24s} {impl:34s} {us:10.1f} us {gbs:8.0f} GB/s {flops / us / 1e6:7.1f} TFLOP/s err {e}",
              flush=True)

    graph = device == "cuda" and not args.no_graph
    ref_us = bench(lambda: layer(q, k, v, ref_meta), device, graph=False) if not args.smoke else 0.0
    add("torch ref (eager)", ref_us or float("nan"), 0.0)
    if graph:   # default config without graph capture: shows what the host side adds
        got = layer(q, k, v, tri_meta)
        add("triton (eager)", bench(lambda: layer(q, k, v, tri_meta), device, graph=False), rel_err(got, want))
    configs = sweep_cfgs if sweep_cfgs else [None]
    for cfg in configs:
        name = "triton"
        if cfg is not None:
            which, value, min_split = cfg
            setattr(tri_be, which, value)
            tri_be.min_split_tokens = min_split
            name = f"triton {'dec' if which == 'decode_config' else 'pre'} m{value.block_m} n{value.block_n} " \
                   f"w{value.num_warps} s{value.num_stages} ms{min_split}"
        try:
            got = layer(q, k, v, tri_meta)
            err = rel_err(got, want)
            us = bench(lambda: layer(q, k, v, tri_meta), device, graph=graph)
        except Exception as exc:  # noqa: BLE001 - one failing variant must not end the run
            print(f"  {name} failed: {type(exc).__name__}: {str(exc)[:300]}")
            continue
        add(name + (" graph" if graph else ""), us, err)
    if args.smoke or device != "cuda":
        return
    # Ceilings on a contiguous cache: SDPA (flash / efficient kernels) and compiled flex_attention.
    kc = torch.randn(b, hkv, ctx, d, device=device, dtype=dtype)
    vc = torch.randn_like(kc)
    qc = torch.randn(b, hq, q_len, d, device=device, dtype=dtype)
    causal = q_len == ctx   # the chunk case runs SDPA unmasked: a ceiling, slightly more work than needed
    sdpa = lambda: torch.nn.functional.scaled_dot_product_attention(qc, kc, vc, is_causal=causal, enable_gqa=True)  # noqa: E731
    add("sdpa contiguous", bench(sdpa, device, graph=False), None)
    if args.no_flex or FLEX_COMPILE_S[0] > args.flex_budget:
        print("  flex skipped (--no-flex or compile budget spent)")
        return
    try:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention
        torch._dynamo.reset()   # else the 9th shape hits dynamo's recompile limit and runs flex unfused
        flex = torch.compile(flex_attention, dynamic=False)
        mask = None
        if q_len > 1:
            mask = create_block_mask(lambda b_, h_, qi, ki: qi + (ctx - q_len) >= ki, None, None, q_len, ctx,
                                     device=device)
        fn = lambda: flex(qc, kc, vc, block_mask=mask, enable_gqa=True)  # noqa: E731
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        FLEX_COMPILE_S[0] += time.perf_counter() - t0
        print(f"  (flex compile {time.perf_counter() - t0:.1f}s)")
        add("flex contiguous (compiled)", bench(fn, device, graph=False), None)
    except Exception as exc:  # noqa: BLE001 - a ceiling that fails to build is reported, not fatal
        print(f"  flex_attention failed: {type(exc).__name__}: {str(exc)[:200]}")


def safe_case(*args) -> None:
    try:
        run_case(*args)
    except Exception as exc:  # noqa: BLE001 - report and go on to the next case
        print(f"  case {args[0]} failed: {type(exc).__name__}: {str(exc)[:300]}")
    torch.cuda.empty_cache() if torch.cuda.is_available() else None


def bench_write(args, device: str, dtype) -> None:
    """The cache write alone: Triton kernel vs index_copy_, for a decode batch and a prefill batch."""
    for t in (64, 16384):
        cache = torch.randn(2, 2048, args.block_size, args.hkv, args.d, device=device, dtype=dtype)
        k = torch.randn(t, args.hkv, args.d, device=device, dtype=dtype)
        v = torch.randn_like(k)
        slots = torch.randperm(cache[0].numel() // (args.hkv * args.d), device=device)[:t]
        be = TritonAttentionBackend(device, dtype)
        for use_index_copy in (False, True):
            be.use_index_copy = use_index_copy
            us = bench(lambda: be.write_kv(cache, k, v, slots), device, graph=device == "cuda")
            gbs = 2 * 2 * k.numel() * k.element_size() / us / 1e3   # read k+v, write k+v
            print(f"  write_kv T={t:6d} {'index_copy_' if use_index_copy else 'triton':12s} {us:8.1f} us "
                  f"{gbs:6.0f} GB/s", flush=True)


def add_head_args(ap: argparse.ArgumentParser) -> None:
    """The attention shape every attention benchmark takes: heads, head dim, cache page (Qwen3-8B by default)."""
    ap.add_argument("--hq", type=int, default=32)
    ap.add_argument("--hkv", type=int, default=8)
    ap.add_argument("-d", type=int, default=128)
    ap.add_argument("--block-size", type=int, default=16)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, correctness only (CPU interpreter)")
    ap.add_argument("--sweep", action="store_true", help="also time kernel config variants")
    ap.add_argument("--no-flex", action="store_true")
    ap.add_argument("--no-graph", action="store_true")
    ap.add_argument("--flex-budget", type=float, default=90.0, help="seconds of flex compiles before skipping")
    ap.add_argument("--batches", default="1,32,64")
    ap.add_argument("--contexts", default="1024,4096,16384")
    add_head_args(ap)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    dtype = torch.bfloat16
    if args.smoke:
        args.batches, args.contexts, args.hq, args.hkv, args.d = "1,3", "40,100", 4, 2, 64
    print(f"device {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}  torch {torch.__version__}  "
          f"hq={args.hq} hkv={args.hkv} d={args.d} block={args.block_size} {dtype}", flush=True)
    dec = TritonAttentionBackend(device, dtype).decode_config
    dec_sweep = pre_sweep = []
    if args.sweep:
        dec_sweep = [("decode_config", replace(dec, **kw), ms) for kw, ms in [
            ({}, 128), ({}, 256), ({}, 512), ({"block_n": 32}, 256), ({"block_n": 128}, 256),
            ({"num_warps": 2}, 256), ({"num_warps": 8}, 256), ({"num_stages": 2}, 256), ({"num_stages": 4}, 256),
            ({"block_n": 128, "num_warps": 8}, 256)]]
        pre_sweep = [("prefill_config", KernelConfig(*c, mask_edges_only=True), 256) for c in [
            (128, 64, 4, 3), (128, 64, 8, 3), (64, 64, 4, 3), (128, 32, 8, 3), (128, 128, 8, 2), (64, 32, 4, 4),
            (64, 128, 4, 2)]]
    for b in map(int, args.batches.split(",")):
        for ctx in map(int, args.contexts.split(",")):
            safe_case(f"decode b={b} ctx={ctx}", b, ctx, 1, args, dec_sweep, device, dtype)
    pre_len = 64 if args.smoke else 2048
    safe_case(f"prefill b=8 len={pre_len}", 8, pre_len, pre_len, args, pre_sweep, device, dtype)
    chunk = pre_len // 4
    safe_case(f"chunk b=8 cached{pre_len - chunk}+new{chunk}", 8, pre_len, chunk, args, pre_sweep, device, dtype)
    bench_write(args, device, dtype)

    print("\n| case | impl | us | GB/s (K+V read) | % of 3.0 TB/s | TFLOP/s | rel err vs ref |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for label, impl, us, gbs, pct, tflops, err in ROWS:
        e = "-" if err is None else f"{err:.1e}"
        print(f"| {label} | {impl} | {us:.1f} | {gbs:.0f} | {pct:.0f}% | {tflops:.1f} | {e} |")
    bad = [r for r in ROWS if r[6] is not None and not (r[6] < 2e-2)]
    if bad:
        raise SystemExit(f"FAILED correctness: {bad}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
