"""Paged prefill attention: candidate kernel configs vs a baseline checkout's kernel, SDPA and flex, in one GPU run.

    python benchmarks/prefill_attn_sweep.py --baseline-dir OLD/core/attention --out $OUT    # CUDA, Qwen3-8B heads
    TRITON_INTERPRET=1 python benchmarks/prefill_attn_sweep.py --smoke                       # CPU: tiny, checks only

Every triton row is checked against a torch reference on the same data (fresh prefill: SDPA, causal, GQA; chunk
and decode: the torch backend) and timed as write + attend from a CUDA graph, as benchmarks/attention_bench.py
does. The SDPA and flex rows read the step's own k/v contiguously (fresh prefill: the same keys; chunk: a
contiguous cache of the same size, unmasked, a ceiling). `--baseline-dir` is a folder holding another version's
triton_backend.py and triton_kernels.py (e.g. `git show HEAD:core/attention/...` copies). Random inputs.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from attention_bench import add_head_args, bench, make_step, rel_err  # noqa: E402 - benchmarks/ is no package

from ember.attention.kv_quant import FP8_KV_DTYPE, FP8_MAX, dequantize_kv, quantize_kv  # noqa: E402
from ember.attention.metadata import build_metadata  # noqa: E402
from ember.attention.torch_backend import TorchAttentionBackend  # noqa: E402
from ember.attention.triton_backend import KernelConfig, TritonAttentionBackend  # noqa: E402
from ember.layers.attention import Attention  # noqa: E402

ROWS: list[dict] = []
TOL = 2e-2   # bf16 output vs a reference on the same data


def load_baseline(folder: Path):
    """TritonAttentionBackend of another version: its triton_backend.py, pointed at the triton_kernels.py beside it."""
    mods = []
    for name in ("triton_kernels", "triton_backend"):
        spec = importlib.util.spec_from_file_location(f"baseline_{name}", folder / f"{name}.py")
        mod = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = mod
        spec.loader.exec_module(mod)
        mods.append(mod)
    mods[1].kernels = mods[0]
    return mods[1].TritonAttentionBackend


class Case:
    """One step (b sequences of ctx tokens, the last q_len new) on a shuffled paged cache, with its reference."""

    def __init__(self, label: str, b: int, ctx: int, q_len: int, args, device: str, fp8: bool = False):
        self.label, self.device = label, device
        hq, hkv, d, bs = args.hq, args.hkv, args.d, args.block_size
        dtype = torch.bfloat16
        cache, tables, self.q, self.k, self.v = make_step(b, ctx, q_len, hq, hkv, d, bs, dtype, device)
        self.layer = Attention(0, hq, hkv, d, scale=d ** -0.5)
        if fp8:   # amax / 448 scales, as calibration would give
            k_scale, v_scale = (x.abs().amax().float() / FP8_MAX for x in (self.k, self.v))
            self.layer.set_kv_scales_(k_scale, v_scale)
            self.layer.kv_scales_to_(device)
            cache = torch.stack([quantize_kv(cache[0], k_scale), quantize_kv(cache[1], v_scale)])
        self.cache, self.tables, self.bs = cache, tables, bs
        self.b, self.ctx, self.q_len = b, ctx, q_len
        self.flops = 4 * b * hq * d * (q_len * (ctx - q_len) + q_len * (q_len + 1) / 2)
        if q_len == ctx:   # fresh prefill: SDPA over the step's own (for fp8: quantized) keys is the reference
            k, v = self.k, self.v
            if fp8:
                k = dequantize_kv(quantize_kv(k, self.layer.k_scale), self.layer.k_scale, dtype)
                v = dequantize_kv(quantize_kv(v, self.layer.v_scale), self.layer.v_scale, dtype)
            self.sdpa_args = tuple(x.view(b, ctx, -1, d).transpose(1, 2) for x in (self.q, k, v))
            self.want = self.sdpa(causal=True).transpose(1, 2).reshape(b * ctx, hq * d)
        else:
            ref = TorchAttentionBackend(device, dtype)
            self.want = self.layer(self.q, self.k, self.v, self.meta(ref))
            kc = torch.randn(b, hkv, ctx, d, device=device, dtype=dtype)
            self.sdpa_args = (torch.randn(b, hq, q_len, d, device=device, dtype=dtype), kc, torch.randn_like(kc))

    def meta(self, backend):
        """Metadata over a fresh copy of the cache, so every implementation starts from the same contents."""
        return build_metadata(backend, [self.cache.clone()], self.bs, [self.q_len] * self.b, [self.ctx] * self.b,
                              self.tables, self.device)

    def sdpa(self, causal: bool) -> torch.Tensor:
        return torch.nn.functional.scaled_dot_product_attention(*self.sdpa_args, is_causal=causal, enable_gqa=True)

    def add(self, impl: str, us: float, err: float | None) -> None:
        row = dict(case=self.label, impl=impl, us=us, tflops=self.flops / us / 1e6, err=err)
        ROWS.append(row)
        e = "-" if err is None else f"{err:.1e}"
        print(f"  {self.label:28s} {impl:44s} {us:9.1f} us {row['tflops']:6.1f} TFLOP/s err {e}", flush=True)

    def time_triton(self, impl: str, backend, cfg_attr: str | None = None, cfg: KernelConfig | None = None,
                    graph: bool = True) -> float | None:
        if cfg is not None:
            setattr(backend, cfg_attr, cfg)
        try:
            meta = self.meta(backend)
            got = self.layer(self.q, self.k, self.v, meta)
            err = rel_err(got, self.want)
            us = bench(lambda: self.layer(self.q, self.k, self.v, meta), self.device, graph=graph and
                       self.device == "cuda") if self.device == "cuda" else float("nan")
        except Exception as exc:  # noqa: BLE001 - one failing variant must not end the sweep
            print(f"  {self.label} {impl} failed: {type(exc).__name__}: {str(exc)[:300]}", flush=True)
            return None
        self.add(impl, us, err)
        return us

    def time_sdpa(self) -> None:
        if self.device == "cuda":   # the chunk runs unmasked: a ceiling, slightly more work than needed
            self.add("sdpa contiguous", bench(lambda: self.sdpa(self.q_len == self.ctx), self.device, graph=False),
                     None)

    def time_flex(self) -> None:
        if self.device != "cuda":
            return
        try:
            from torch.nn.attention.flex_attention import create_block_mask, flex_attention
            torch._dynamo.reset()
            flex = torch.compile(flex_attention, dynamic=False)
            off = self.ctx - self.q_len
            mask = create_block_mask(lambda b_, h_, qi, ki: qi + off >= ki, None, None, self.q_len, self.ctx,
                                     device=self.device)
            fn = lambda: flex(*self.sdpa_args, block_mask=mask, enable_gqa=True)  # noqa: E731
            t0 = time.perf_counter()
            fn()
            torch.cuda.synchronize()
            print(f"  (flex compile {time.perf_counter() - t0:.1f}s)", flush=True)
            self.add("flex contiguous (compiled)", bench(fn, self.device, graph=False), None)
        except Exception as exc:  # noqa: BLE001 - a ceiling that fails to build is reported, not fatal
            print(f"  flex failed: {type(exc).__name__}: {str(exc)[:200]}", flush=True)


def name(cfg: KernelConfig) -> str:
    mask = "" if cfg.mask_edges_only else " mask-all"
    return f"m{cfg.block_m} n{cfg.block_n} w{cfg.num_warps} s{cfg.num_stages}{mask}"


def best_of(label: str, impls: list[str]) -> str | None:
    rows = [r for r in ROWS if r["case"] == label and r["impl"] in impls and r["err"] is not None
            and r["err"] < TOL and r["us"] == r["us"]]
    return min(rows, key=lambda r: r["us"])["impl"] if rows else None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, correctness only (CPU interpreter)")
    ap.add_argument("--baseline-dir", type=Path, help="folder with the baseline triton_backend.py + triton_kernels.py")
    ap.add_argument("--no-flex", action="store_true", help="skip flex_attention (its compile takes ~30-60 s)")
    ap.add_argument("--out", type=Path)
    add_head_args(ap)
    args = ap.parse_args()
    device = "cuda" if torch.cuda.is_available() and not args.smoke else "cpu"
    if args.smoke:
        args.hq, args.hkv, args.d, args.block_size = 8, 2, 32, 8
    print(f"device {torch.cuda.get_device_name() if device == 'cuda' else 'cpu'}  torch {torch.__version__}  "
          f"hq={args.hq} hkv={args.hkv} d={args.d} block={args.block_size} bf16", flush=True)
    Old = load_baseline(args.baseline_dir) if args.baseline_dir else None
    new = TritonAttentionBackend(device, torch.bfloat16)
    pre, fp8_pre = new.prefill_config, new.fp8_prefill_config
    length, batch = (48, 2) if args.smoke else (2048, 8)
    if args.smoke:   # tiles small enough that the tiny prompts span several key blocks
        pre = fp8_pre = KernelConfig(block_m=16, block_n=16, num_warps=4, num_stages=2, mask_edges_only=True)
    cands = [KernelConfig(*c, mask_edges_only=True) for c in [   # (rows, keys, warps, stages); 4 warps x 128 rows x
        (128, 64, 4, 3), (128, 64, 8, 3), (128, 64, 8, 2), (128, 128, 8, 2), (128, 128, 8, 3),   # 128 keys spills
        (256, 64, 8, 2), (64, 64, 4, 3), (64, 128, 4, 2), (64, 128, 4, 3)]]                      # ~2 KB (ptxas)
    if args.smoke:
        cands = [pre, replace(pre, block_n=32)]

    print("== prefill", flush=True)
    c = Case(f"prefill b={batch} len={length}", batch, length, length, args, device)
    if Old:
        c.time_triton("baseline (default config)", Old(device, torch.bfloat16))
    c.time_sdpa()
    impls = []
    for cfg in cands:
        impls.append(name(cfg))
        c.time_triton(impls[-1], TritonAttentionBackend(device, torch.bfloat16), "prefill_config", cfg)
    top = best_of(c.label, impls)
    best = next((cfg for cfg in cands if name(cfg) == top), pre)
    print(f"  best: {name(best)}", flush=True)
    cfg = replace(best, mask_edges_only=False)
    c.time_triton(name(cfg), TritonAttentionBackend(device, torch.bfloat16), "prefill_config", cfg)

    print("== chunk", flush=True)
    chunk = length // 4
    ch = Case(f"chunk b={batch} cached{length - chunk}+new{chunk}", batch, length, chunk, args, device)
    if Old:
        ch.time_triton("baseline (default config)", Old(device, torch.bfloat16))
    for cfg in dict.fromkeys([pre, best]):
        ch.time_triton(name(cfg), TritonAttentionBackend(device, torch.bfloat16), "prefill_config", cfg)
    ch.time_sdpa()

    print("== fp8 prefill", flush=True)
    f = Case(f"fp8 prefill b={batch} len={length}", batch, length, length, args, device, fp8=True)
    if Old:
        f.time_triton("baseline (default config)", Old(device, torch.bfloat16))
    for cfg in dict.fromkeys([fp8_pre, best, replace(best, block_n=128, num_warps=8, num_stages=2),
                              replace(best, num_warps=8)]):
        f.time_triton(name(cfg), TritonAttentionBackend(device, torch.bfloat16), "fp8_prefill_config", cfg)

    print("== decode (must not change)", flush=True)
    dec_cases = [(1, 40), (3, 100)] if args.smoke else [(1, 1024), (32, 1024), (64, 4096)]
    for fp8 in (False, True):
        attr = "fp8_decode_config" if fp8 else "decode_config"
        for b, ctx in (dec_cases[-1:] if fp8 else dec_cases):
            dc = Case(f"{'fp8 ' if fp8 else ''}decode b={b} ctx={ctx}", b, ctx, 1, args, device, fp8=fp8)
            if Old:
                dc.time_triton("baseline (default config)", Old(device, torch.bfloat16))
            dcfg = getattr(new, attr)
            for cfg in dict.fromkeys([dcfg, replace(dcfg, mask_edges_only=not dcfg.mask_edges_only)]):
                dc.time_triton(name(cfg), TritonAttentionBackend(device, torch.bfloat16), attr, cfg)

    if not args.no_flex:
        print("== flex (last: its compile is slow)", flush=True)
        c.time_flex()

    print("\n| case | impl | us | TFLOP/s | rel err vs reference |")
    print("|---|---|---:|---:|---:|")
    for r in ROWS:
        e = "-" if r["err"] is None else f"{r['err']:.1e}"
        print(f"| {r['case']} | {r['impl']} | {r['us']:.1f} | {r['tflops']:.1f} | {e} |")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "prefill_attn_sweep.json").write_text(json.dumps(ROWS, indent=1))
    bad = [r for r in ROWS if r["err"] is not None and not r["err"] < TOL]
    if bad:
        raise SystemExit(f"FAILED correctness: {bad}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
