"""One GPU run for the quantized-linear kernels: correctness + timings per Qwen3-8B shape and M, then end to end.

    python benchmarks/make_shim.py /tmp/shim && PYTHONPATH=/tmp/shim python benchmarks/quant_bench.py --out $OUT

1. Micro (--kinds, --ms): per shape (qkv 6144x4096, o 4096x4096, gate_up 24576x4096, down 4096x12288), kernel
   kind and M: every candidate config vs the fp64 reference dequant matmul (the format's activation semantics;
   NVFP4 weight-only), timed in a CUDA graph of back-to-back calls cycling over enough weight copies (>= 150 MB)
   that each call reads HBM; baselines in the same run: bf16 F.linear, ember's bf16 skinny GEMM (gemv.linear),
   and the old dequantize-then-matmul path (EMBER_QUANT_KERNELS=0, eager) at M 1 and 64. Prints the best config per
   (kind, N, K, M bucket) as dispatch.TABLE lines.
2. End to end (--methods): qwen3-8b RANDOM weights quantized by quantize_random_, CUDA graphs, triton attention:
   batch-1 decode tok/s (128 in / --out1 new) and batch-64 decode tok/s (128 in / --out64 new), ratios to bf16,
   and the bandwidth bound from the bytes a decode step reads (the lm_head stays bf16).
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import time
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F
from graph_profile import graph_time_us  # benchmarks/ is on sys.path when run as a script

from ember.layers import gemv
from ember.quantization.formats import get_format
from ember.quantization.kernels import dispatch, tinygemm
from ember.quantization.kernels.dispatch import Config
from ember.quantization.linear import QuantLinear
from ember.quantization.random_quant import fill_random_

SHAPES = {"qkv": (6144, 4096), "o_proj": (4096, 4096), "gate_up": (24576, 4096), "down": (4096, 12288)}
ALGO = {"int4": ("W4A16_AWQ", 128), "nvfp4": ("NVFP4", 16), "fp8": ("FP8", None), "int8_wo": ("W8A16", None),
        "int8_sq": ("W8A8_SQ_PER_CHANNEL", None), "fp8_rowwise": ("FP8_PER_CHANNEL_PER_TOKEN", None),
        "w4a8": ("W4A8_AWQ", 128)}
OUT: dict = {"micro": [], "e2e": []}


def candidates(kind: str, m: int) -> list[Config]:
    """Configs tried per M (block_n counts packed rows for int4: two output rows each); h2, ew2 and split-K are
    4-bit only; FP8 (and W4A8, on its FP8 weight) tries its GEMV at M <= 4 (cuBLAS FP8 won above in earlier runs);
    FP8RowWise has no cuBLAS path."""
    four = kind in ("int4", "nvfp4")
    mm = [Config("mm", 0, 0, 0)] if kind in ("fp8", "fp8_rowwise", "w4a8") or (kind == "int8_sq" and m > 16) else []
    bm = 1 << (m - 1).bit_length()
    if kind in ("fp8", "w4a8"):
        ew = {1: [(2, 1024, 4, 1), (4, 1024, 4, 1), (4, 2048, 4, 1), (8, 1024, 4, 1), (8, 2048, 8, 1),
                  (2, 2048, 4, 1), (4, 512, 4, 1), (16, 1024, 8, 1), (4, 1024, 4, 2), (8, 512, 4, 1)],
              2: [(2, 1024, 4, 1), (4, 1024, 8, 1), (4, 512, 4, 1), (8, 512, 8, 1), (2, 2048, 8, 1)],
              4: [(2, 1024, 8, 1), (4, 512, 8, 1), (2, 512, 4, 1), (4, 256, 4, 1)]}.get(bm, [])
        return mm + [Config("ew", bm, n, k, w, st) for n, k, w, st in ew] + (fp8_h2(bm) if m <= 8 else [])
    if m <= 4 and four:      # h2 (block_n, block_k, warps, stages, split); stages 2: double-buffered loads
        h2 = {"nvfp4": [(64, 512, 4, 1, 4), (64, 256, 4, 1, 4), (128, 256, 4, 1, 2), (64, 512, 4, 1, 2),
                        (128, 512, 8, 1, 2), (32, 256, 2, 1, 4), (64, 512, 8, 1, 4), (64, 256, 4, 2, 4),
                        (32, 256, 2, 2, 4), (32, 512, 4, 2, 4), (64, 512, 8, 2, 4), (128, 256, 8, 2, 2)],
              "int4": [(4, 1024, 4, 1, 8), (8, 256, 2, 1, 8), (16, 128, 4, 1, 8), (32, 128, 4, 1, 4),
                       (32, 128, 4, 1, 2), (32, 128, 4, 2, 4), (16, 128, 4, 2, 8), (32, 128, 8, 2, 4),
                       (64, 128, 4, 1, 2), (8, 128, 2, 1, 8), (16, 256, 4, 1, 8), (32, 256, 4, 1, 4),
                       (32, 256, 8, 2, 4)]}[kind]
        return ([Config("h2", bm, *c) for c in h2]
                + [Config("ew2", bm, 4, 256, 4, 1), Config("dot", 16, 32, 128, 4, 3, 4),
                   Config("dot", 16, 64, 128, 4, 3, 4)])
    if m <= 8 and kind == "fp8_rowwise":
        return [Config("ew", bm, 4, 512, 4, 1), Config("dot", 16, 32, 128, 4, 3)] + fp8_h2(bm) + mm
    if m <= 4:
        ew = {1: [(4, 512, 4), (2, 1024, 4), (4, 1024, 8)], 2: [(4, 512, 4), (4, 1024, 8)]}.get(m, [(4, 256, 4),
                                                                                                 (2, 512, 4)])
        return [Config("ew", bm, n, k, w, 1) for n, k, w in ew] + [Config("dot", 16, 32, 128, 4, 3)]
    gemv = []
    if m <= 16:
        dots = [(16, 32, 128, 4, 3), (16, 32, 256, 4, 3), (16, 64, 128, 4, 3)]
        split = ([(16, 32, 128, 4, 3, s) for s in (2, 4, 8)] + [(16, 64, 128, 4, 3, s) for s in (2, 4)]
                 + [(16, 64, 256, 4, 3, 4)])
        if kind == "nvfp4" and m <= 8:       # the half2 GEMV's M = 8 rows (kernels/table.py) against tl.dot
            gemv = [Config("h2", 8, 32, 128, 2, 1, 4), Config("h2", 8, 64, 256, 4, 1, 4)]
    elif m <= 64:
        dots = [(64, 64, 128, 4, 3), (64, 32, 128, 4, 3), (32, 32, 128, 4, 3), (64, 64, 128, 8, 3),
                (64, 128, 128, 8, 3), (64, 64, 64, 4, 4), (32, 64, 128, 4, 3)]
        split = ([(64, 32, 128, 4, 3, s) for s in (2, 4, 8)] + [(64, 64, 128, 4, 3, s) for s in (2, 4)]
                 + [(64, 64, 128, 8, 3, s) for s in (2, 4)] + [(32, 64, 128, 4, 3, s) for s in (2, 4)]
                 + [(64, 128, 128, 8, 3, 2), (64, 64, 64, 4, 4, 4), (64, 64, 128, 4, 4, 4), (64, 64, 128, 4, 3, 8)])
    else:
        dots = [(64, 64, 128, 4, 3), (128, 128, 64, 8, 3), (128, 64, 128, 8, 3)]
        split = [(64, 64, 128, 4, 3, 2), (128, 64, 128, 8, 3, 2), (64, 64, 128, 4, 3, 4), (128, 64, 128, 4, 3, 2)]
    dq = [Config("dq", 0, 0, 0)] if kind in dispatch.DENSE_ABOVE_M and m > 64 else []   # dense weight + cuBLAS
    return [Config("dot", *d) for d in dots + (split if four else [])] + gemv + mm + dq


def fp8_h2(bm: int) -> list[Config]:
    """The FP8-weight half2 GEMV's candidates (w8_gemv.py): (block_n, block_k, warps, stages, split)."""
    h2 = [(64, 256, 4, 1, 4), (64, 256, 4, 1, 2), (32, 256, 4, 1, 4), (32, 256, 4, 1, 2), (64, 128, 4, 1, 4),
          (32, 128, 4, 1, 4), (64, 256, 8, 1, 4), (16, 256, 4, 1, 4), (64, 256, 4, 2, 4), (32, 256, 4, 2, 4),
          (128, 256, 8, 1, 2), (64, 512, 8, 1, 2), (32, 512, 4, 1, 2), (16, 512, 4, 1, 1), (32, 256, 4, 1, 1),
          (64, 256, 4, 1, 8), (8, 512, 4, 1, 1), (16, 1024, 4, 1, 1), (32, 512, 4, 1, 1), (16, 512, 8, 1, 1),
          (16, 512, 4, 1, 2), (8, 1024, 4, 1, 1), (16, 512, 4, 2, 1), (16, 256, 4, 1, 1), (16, 256, 4, 2, 4),
          (32, 256, 4, 2, 1), (32, 256, 8, 1, 1), (16, 256, 2, 1, 4), (64, 256, 8, 1, 8),
          # a whole K row slice (or most of it) in flight at once: fewer, longer latency waits a program
          (8, 1024, 4, 2, 1), (4, 1024, 4, 2, 1), (8, 512, 4, 2, 1), (4, 2048, 4, 1, 1), (8, 2048, 4, 1, 1),
          (8, 2048, 8, 1, 1), (4, 4096, 4, 1, 1), (8, 4096, 8, 1, 1), (16, 2048, 8, 1, 1), (4, 2048, 8, 1, 1)]
    return [Config("h2", bm, *c) for c in h2]


def eager_time_us(fn, calls: int) -> float:
    for i in range(2):
        fn(i)
    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    a.record()
    for i in range(calls):
        fn(i)
    b.record()
    b.synchronize()
    return a.elapsed_time(b) * 1e3 / calls


def make_layer(kind: str, n: int, k: int) -> QuantLinear:
    algo, group = ALGO[kind]
    return fill_random_(QuantLinear(get_format(algo, group), k, [n], False, torch.bfloat16, "cuda"),
                        torch.randn(n, k, device="cuda") * k ** -0.5)


def reference(kind: str, layer: QuantLinear, x: torch.Tensor) -> torch.Tensor:
    t = {name: v.to(x.device) for name, v in layer.tensors().items()}   # (W4A8 keeps some in host memory)
    w = layer.format.weight(t, layer.output_sizes).double()
    xa = x * t["pre_quant_scale"].to(x.dtype) if kind == "nvfp4" and "pre_quant_scale" in t else (
        x if kind == "nvfp4" else layer.format.act(x, t))
    return F.linear(xa.double(), w), F.linear(xa, w.to(x.dtype)).double()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b).norm() / b.norm()).item()


def micro(args, t_start: float) -> dict:
    table = {}
    for name, (n, k) in SHAPES.items():
        bf = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * k ** -0.5
              for _ in range(max(2, math.ceil(150e6 / (2 * n * k))))]
        base = {}
        for m in args.ms:
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            calls = 12
            base[m] = (graph_time_us(lambda i: F.linear(x, bf[i % len(bf)]), calls),
                       graph_time_us(lambda i: gemv.linear(x, bf[i % len(bf)]), calls))
        bf = None
        for kind in args.kinds:
            if time.perf_counter() - t_start > args.micro_budget:
                print(f"   micro budget reached: skipping {name}/{kind}", flush=True)
                continue
            one = make_layer(kind, n, k)
            nbytes = sum(v.numel() * v.element_size() for v in one.tensors().values())
            layers = [one] + [make_layer(kind, n, k) for _ in range(max(1, math.ceil(150e6 / nbytes)) - 1)]
            for m in args.ms:
                x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16) * 2
                ref, bf_out = reference(kind, one, x)
                base_err = rel(bf_out, ref)
                calls = max(12, len(layers))
                old = None
                if m in (1, 64):
                    dispatch.ENABLED = False   # eager: the NVFP4 fallback builds CPU tensors (not capturable)
                    old = eager_time_us(lambda i: layers[i % len(layers)](x), calls)
                    dispatch.ENABLED = True
                tg = None            # INT4 at M <= 4 in bf16 runs tinygemm (dispatch.quant_linear), not the table
                if one.tinygemm is not None:        # (timed at every M: where its MAX_M should lie)
                    tg = graph_time_us(lambda i: tinygemm.linear(x, *layers[i % len(layers)].tinygemm, None, None,
                                                                 n), calls)
                res, best = [], None
                for cfg in candidates(kind, m):
                    try:
                        y = dispatch.run(kind, one, x, cfg._replace(block_k=min(cfg.block_k, k)))
                        err = rel(y, ref)
                        ok = bool(torch.isfinite(y).all()) and err < max(8e-3, 2 * base_err + 2e-3)
                        t = graph_time_us(lambda i: dispatch.run(kind, layers[i % len(layers)], x, cfg), calls)
                    except Exception as e:  # noqa: BLE001 - a config that fails to compile is not a candidate
                        print(f"   {name} {kind} M={m} {cfg}: FAILED {type(e).__name__}: {str(e)[:300]}", flush=True)
                        continue
                    res.append({"cfg": list(cfg), "us": t, "err": err, "ok": ok})
                    if not ok:
                        print(f"   {name} {kind} M={m} {cfg}: WRONG err {err:.2e} (bf16 {base_err:.2e})", flush=True)
                    if ok and (best is None or t < best[1]):
                        best = (cfg, t, err)
                if best is not None:
                    table[(kind, n, k, dispatch.m_bucket(m))] = best[0]
                row = {"shape": name, "kind": kind, "M": m, "bf16_us": base[m][0], "gemv_us": base[m][1],
                       "old_us": old, "tinygemm_us": tg, "best": list(best[0]) if best else None, "best_us": best[1] if best else None,
                       "err": best[2] if best else None, "bf16_err": base_err, "all": res, "bytes": nbytes}
                OUT["micro"].append(row)
                print(f"   {name:7s} {kind:8s} M={m:4d} bf16 {base[m][0]:7.1f} gemv {base[m][1]:7.1f} us | best "
                      f"{best[0] if best else None} {best[1] if best else float('nan'):7.1f} us "
                      f"({base[m][0] / best[1] if best else 0:.2f}x) err {best[2] if best else float('nan'):.1e}"
                      + (f" | old {old:.1f} us" if old else "") + (f" | tinygemm {tg:.1f} us" if tg else ""), flush=True)
            layers = one = None
            torch.cuda.empty_cache()
    OUT["table"] = {f"{k}": list(c) for k, c in table.items()}
    return table


def decode_engine(model):
    """The engine both end-to-end benchmarks serve `model` with: up to 64 sequences of 256 tokens, one 8192-token
    prefill step, CUDA graphs, triton attention."""
    from ember.bench.model import make_engine
    from ember.config import EngineConfig, KvCacheConfig

    ec = EngineConfig(max_num_seqs=64, max_num_tokens=8192, max_model_len=256,
                      kv_cache=KvCacheConfig(num_blocks=1200, enable_prefix_caching=False),
                      attention_backend="triton", cuda_graphs=True)
    return make_engine(model, ec, torch.device("cuda"), torch.bfloat16, 256)


def e2e(args) -> None:
    from ember.bench import datasets, engine_bench
    from ember.bench.model import build_random_model, load_bench_config
    from ember.quantization.random_quant import quantize_random_

    cfg = load_bench_config("qwen3-8b")
    for method in args.methods:
        label = method or "bf16"
        try:
            t0 = time.perf_counter()
            torch.cuda.synchronize()
            gpu_before = torch.cuda.memory_allocated()
            model = build_random_model(cfg, torch.bfloat16, torch.device("cuda"))
            bf16_body = sum(p.numel() * p.element_size() for n_, p in model.named_parameters()
                            if p.dim() == 2 and "embed" not in n_ and "lm_head" not in n_)
            if method:
                quantize_random_(model, method)
            torch.cuda.synchronize()
            body = sum(p.numel() * p.element_size() for n_, p in model.named_parameters()
                       if p.dim() >= 1 and "embed" not in n_ and "lm_head" not in n_ and "norm" not in n_)
            head = model.lm_head.weight.numel() * model.lm_head.weight.element_size()
            gc.collect()
            gpu_model = torch.cuda.memory_allocated() - gpu_before   # the model as served: weights + kernel copies
            built = time.perf_counter() - t0
            eng = decode_engine(model)
            r1 = engine_bench.latency(eng, datasets.synthetic(1, 128, args.out1, cfg.vocab_size, seed=2), warmup=1)
            r64 = engine_bench.latency(eng, datasets.synthetic(64, 128, args.out64, cfg.vocab_size, seed=3), warmup=1)
            row = {"method": label, "b1_tok_s": r1["decode_tokens_per_s"], "b1_itl_p50_ms": r1["itl_p50_ms"],
                   "b64_tok_s": r64["decode_tokens_per_s"], "b64_itl_p50_ms": r64["itl_p50_ms"],
                   "b64_ttft_ms": r64["ttft_ms"],
                   "linear_GB": body / 1e9, "bf16_linear_GB": bf16_body / 1e9, "lm_head_GB": head / 1e9,
                   "model_gpu_GB": gpu_model / 1e9, "build_s": built}
            print(f"   {label}: b1 {row['b1_tok_s']:.1f} tok/s, b64 {row['b64_tok_s']:.0f} tok/s, b64 TTFT "
                  f"{row['b64_ttft_ms']:.0f} ms (64 x 128 prompt tokens in one step), linears "
                  f"{row['linear_GB']:.2f} GB (+ lm_head {row['lm_head_GB']:.2f} GB), model on the GPU "
                  f"{row['model_gpu_GB']:.2f} GB, built in {built:.0f} s",
                  flush=True)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            row = {"method": label, "failed": True}
        OUT["e2e"].append(row)
        eng = model = None
        gc.collect()
        torch.cuda.empty_cache()


def report() -> None:
    dev = f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    print(f"\n{dev}; RANDOM weights, Qwen3-8B shapes; kernel timings: CUDA graph, median, HBM-resident weights")
    if OUT["micro"]:
        print("| shape | kind | M | bf16 F.linear us | ember gemv us | kernel us | x vs bf16 | best config | rel err "
              "(bf16 ref) | old path us |")
        print("|---|---|---|---|---|---|---|---|---|---|")
        for r in OUT["micro"]:
            if r["best_us"]:
                print(f"| {r['shape']} | {r['kind']} | {r['M']} | {r['bf16_us']:.1f} | {r['gemv_us']:.1f} | "
                      f"{r['best_us']:.1f} | {r['bf16_us'] / r['best_us']:.2f} | {r['best']} | {r['err']:.1e} "
                      f"({r['bf16_err']:.1e}) | {'' if r['old_us'] is None else round(r['old_us'], 1)} |")
            else:
                print(f"| {r['shape']} | {r['kind']} | {r['M']} | {r['bf16_us']:.1f} | | FAILED | | | | |")
        print("\nTABLE = {")
        for key, cfg in OUT.get("table", {}).items():
            print(f"    {key}: Config{tuple(cfg)},")
        print("}")
    rows = [r for r in OUT["e2e"] if not r.get("failed")]
    base = next((r for r in rows if r["method"] == "bf16"), None)
    if rows:
        print("\n| method | b1 decode tok/s | x bf16 | b64 decode tok/s | x bf16 | b64 TTFT ms (8192-token prefill) "
              "| linear GB/step | bandwidth bound x bf16 (lm_head bf16) |")
        print("|---|---|---|---|---|---|---|---|")
        for r in rows:
            x1 = r["b1_tok_s"] / base["b1_tok_s"] if base else float("nan")
            x64 = r["b64_tok_s"] / base["b64_tok_s"] if base else float("nan")
            bound = (r["bf16_linear_GB"] + r["lm_head_GB"]) / (r["linear_GB"] + r["lm_head_GB"])
            print(f"| {r['method']} | {r['b1_tok_s']:.1f} | {x1:.2f} | {r['b64_tok_s']:.0f} | {x64:.2f} | "
                  f"{r['b64_ttft_ms']:.0f} | {r['linear_GB']:.2f} | {bound:.2f} |")
    for r in OUT["e2e"]:
        if r.get("failed"):
            print(f"| {r['method']} | FAILED |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    ap.add_argument("--kinds", default="int4,nvfp4,fp8,int8_wo,int8_sq")
    ap.add_argument("--ms", default="1,2,4,8,16,64,256")
    ap.add_argument("--methods", default="bf16,fp8,int4-awq,nvfp4,int8-wo,int8-sq")
    ap.add_argument("--micro-budget", type=float, default=300.0, help="seconds; later shapes/kinds are skipped")
    ap.add_argument("--out1", type=int, default=128)
    ap.add_argument("--out64", type=int, default=64)
    args = ap.parse_args()
    args.kinds = [k for k in args.kinds.split(",") if k]
    args.ms = [int(m) for m in args.ms.split(",") if m]
    args.methods = [None if m == "bf16" else m for m in args.methods.split(",") if m]
    Path(args.out).mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        if args.kinds:
            table = micro(args, t0)
            dispatch.TABLE.update(table)          # e2e below runs with what was just measured
            print(f"micro {time.perf_counter() - t0:.0f} s", flush=True)
        if args.methods:
            e2e(args)
    finally:
        Path(args.out, "quant_bench.json").write_text(json.dumps(OUT, indent=2, default=str))
        report()
        print(f"total {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
