"""One GPU run for the fused MoE path (ember.layers.moe_kernels) against the reference expert loop.

    python benchmarks/make_shim.py /tmp/shim && PYTHONPATH=/tmp/shim python benchmarks/moe_bench.py --out $OUT

1. Correctness, bf16, Qwen3-30B-A3B (E=128, top-8, H=2048, I=768) and Mixtral-8x7B (E=8, top-2, H=4096, I=14336)
   layer shapes: fused and loop vs an fp32 loop (relative Frobenius error).
2. Layer time (experts only, routing given) at every bucket bound T = 1, 4, 8, 16, 64, ..., 4096 (the table shows
   1, 8, 64, 512, 4096): the loop (eager, it syncs) and every candidate config of the fused path, timed in a CUDA
   graph of back-to-back calls that cycle over 16 random routings (the active experts change every call, as from
   layer to layer). Rows report the bytes of the distinct active experts per call over the time (TB/s) and TFLOP/s.
   The best config per (shape, T bucket) goes in moe_kernels.TABLE for part 3 (printed at the end, to paste).
   T = 1 also gets a per-launch breakdown.
3. Whole model, RANDOM bf16 weights: qwen3-30b-a3b (all 48 layers) and mixtral-8x7b cut to 8 layers (93 GB does not
   fit): batch-1 decode tok/s and offline throughput (256 requests 128 in / 128 out) with CUDA graphs (fused), and
   eager fused vs eager loop on few tokens (the loop cannot be captured).
Stops starting new sections past --budget-s seconds; prints the tables at the end either way. The full sweep takes
~150 s of a ~260 s run on an H100 (Mixtral's whole-model part needs --budget-s 240); --no-sweep times only the
configs the table picks.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import time
import traceback
from pathlib import Path

import torch
from graph_profile import graph_time_us  # benchmarks/ is on sys.path when run as a script

from ember.layers import moe, moe_kernels
from ember.layers.moe import FusedExperts
from ember.layers.moe_kernels import Config

SHAPES = {"qwen3-30b-a3b": (128, 8, 2048, 768), "mixtral-8x7b": (8, 2, 4096, 14336)}   # E, K, H, I
TOKENS = (1, 4, 8, 16, 64, 128, 256, 512, 1024, 4096)          # the bucket bounds of moe_kernels.BUCKETS
SHOWN = (1, 8, 64, 512, 4096)
DECODE = [Config(16, 64, 128, 1, 4, 4), Config(16, 128, 128, 1, 4, 3), Config(16, 64, 256, 1, 4, 3),
          Config(16, 32, 128, 1, 4, 4), Config(16, 128, 64, 1, 4, 5), Config(16, 64, 64, 1, 4, 6),
          Config(16, 128, 256, 1, 8, 3), Config(16, 32, 256, 1, 2, 3)]
MID = [Config(16, 64, 128, 1, 4, 4), Config(16, 128, 128, 1, 4, 3), Config(32, 128, 64, 8, 4, 3),
       Config(64, 128, 64, 8, 4, 3), Config(32, 256, 64, 8, 8, 3), Config(64, 256, 64, 8, 8, 4)]
PREFILL = [Config(64, 128, 64, 8, 4, 3), Config(64, 256, 64, 8, 8, 4), Config(128, 128, 64, 8, 8, 3),
           Config(128, 256, 64, 8, 8, 4), Config(128, 256, 64, 16, 8, 3), Config(128, 128, 64, 8, 4, 4),
           Config(256, 128, 64, 8, 8, 3)]
HBM_TBPS, BF16_TFLOPS = 3.35, 989.0    # H100 SXM datasheet peaks (dense bf16)
OUT: dict = {"correctness": [], "layer": [], "e2e": []}
T0 = time.perf_counter()


SWEEP = True


def candidates(t: int, e: int, i: int) -> list[Config]:
    """The configs timed at T tokens: a sweep, or (--no-sweep) only the one moe_kernels would pick."""
    if not SWEEP:
        return [moe_kernels.config_for(t, e, i)]
    return DECODE if t <= 16 else MID if t <= 256 else PREFILL


def free() -> None:
    gc.collect()
    torch.cuda.empty_cache()


def experts(e: int, h: int, i: int) -> FusedExperts:
    m = FusedExperts(e, h, i, "silu").to("cuda", torch.bfloat16)
    with torch.no_grad():
        m.gate_up_proj.normal_(0, h ** -0.5)
        m.down_proj.normal_(0, i ** -0.5)
    return m


def routings(t: int, e: int, k: int, n: int = 16) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """n random (ids [T, K], weights [T, K]) as a softmax router would give: K distinct experts per token."""
    out = []
    for _ in range(n):
        ids = torch.rand(t, e, device="cuda").argsort(dim=1)[:, :k]
        w = torch.softmax(torch.randn(t, k, device="cuda"), -1).to(torch.bfloat16)
        out.append((ids, w))
    return out


def eager_time_us(fn, n: int) -> float:
    fn(0)
    torch.cuda.synchronize()
    times = []
    for i in range(n):
        t = time.perf_counter()
        fn(i)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e6)
    return sorted(times)[len(times) // 2]


@torch.no_grad()
def correctness() -> None:
    for name, (e, k, h, i) in SHAPES.items():
        m = experts(e, h, i)
        ref32 = copy.deepcopy(m).float()
        for t in (1, 64, 512):
            x = torch.randn(t, h, device="cuda", dtype=torch.bfloat16)
            ids, w = routings(t, e, k, 1)[0]
            exact = ref32.reference(x.float(), ids, w.float())
            fused = moe_kernels.fused_experts(x, m.gate_up_proj, m.down_proj, ids, w)
            loop = m.reference(x, ids, w)
            rel = lambda y: ((y.float() - exact).norm() / exact.norm()).item()   # noqa: E731
            row = {"shape": name, "T": t, "fused_err": rel(fused), "loop_err": rel(loop)}
            row["ok"] = bool(torch.isfinite(fused).all()) and row["fused_err"] < 2 * row["loop_err"] + 1e-3
            OUT["correctness"].append(row)
            print(f"   {name} T={t}: fused err {row['fused_err']:.2e}, loop err {row['loop_err']:.2e} ok={row['ok']}",
                  flush=True)
        m = ref32 = None
        free()


@torch.no_grad()
def breakdown(name: str, m: FusedExperts, rs, x: torch.Tensor, cfg: Config) -> None:
    """T = 1: GPU time of each launch of the fused path (align, gate_up + act, down x weight, sum over K)."""
    e, i, h, k = m.num_experts, m.intermediate_size, x.shape[1], rs[0][0].shape[1]
    routing = moe_kernels.align(rs[0][0], e, cfg.block_m)
    inter = torch.empty(k, i, dtype=x.dtype, device="cuda")
    out = torch.empty(k, h, dtype=x.dtype, device="cuda")
    stages = {
        "align": lambda j: moe_kernels.align(rs[j % len(rs)][0], e, cfg.block_m),
        "gate_up+act": lambda j: moe_kernels._gemm(x, m.gate_up_proj, inter, None, routing, i, k, True, False, cfg),
        "down*w": lambda j: moe_kernels._gemm(inter, m.down_proj, out, rs[0][1].reshape(-1), routing, h, 1, False,
                                              False, cfg),
        "sum_k": lambda j: out.view(1, k, h).sum(dim=1),
    }
    row = {"shape": name, **{s: graph_time_us(fn, 16) for s, fn in stages.items()}}
    row["gate_up_TBps"] = k * 2 * i * h * 2 / row["gate_up+act"] / 1e6
    row["down_TBps"] = k * h * i * 2 / row["down*w"] / 1e6
    OUT.setdefault("breakdown", []).append(row)
    print(f"   {name} T=1 stages (us): " + ", ".join(f"{s} {row[s]:.1f}" for s in stages)
          + f" | gate_up {row['gate_up_TBps']:.2f} TB/s, down {row['down_TBps']:.2f} TB/s", flush=True)


@torch.no_grad()
def layer_times() -> dict[tuple[int, int, int], Config]:
    """-> the measured best config per (E, I, T bucket), moe_kernels.TABLE's keys."""
    best: dict[tuple[int, int, int], Config] = {}
    for name, (e, k, h, i) in SHAPES.items():
        m = experts(e, h, i)
        bytes_per_expert = (2 * i * h + h * i) * 2
        for t in TOKENS:
            rs = routings(t, e, k)
            xs = [torch.randn(t, h, device="cuda", dtype=torch.bfloat16) for _ in range(2)]
            active = sum(len(torch.unique(ids)) for ids, _ in rs) / len(rs)
            flops = 2 * t * k * 3 * h * i
            loop_us = eager_time_us(lambda j: m.reference(xs[j % 2], *rs[j % len(rs)]), 5 if t >= 512 else 10)
            calls = 16 if t <= 512 else 4
            res = []
            for cfg in candidates(t, e, i):
                try:
                    us = graph_time_us(lambda j: moe_kernels.fused_experts(xs[j % 2], m.gate_up_proj, m.down_proj,
                                                                           *rs[j % len(rs)], cfg=cfg), calls)
                except Exception as exc:  # noqa: BLE001 - a config that fails to compile is just not a candidate
                    print(f"   {name} T={t} {cfg}: FAILED {type(exc).__name__}: {str(exc)[:160]}", flush=True)
                    continue
                res.append((cfg, us))
            cfg, us = min(res, key=lambda r: r[1])
            default = moe_kernels.DEFAULT[moe_kernels.t_bucket(t)]
            default_us = next((u for c, u in res if c == default), None)
            row = {"shape": name, "T": t, "loop_us": loop_us, "best_cfg": list(cfg), "best_us": us,
                   "default_cfg": list(default), "default_us": default_us, "active_experts": active,
                   "TBps": active * bytes_per_expert / us / 1e6, "TFLOPs": flops / us / 1e6,
                   "all": [(list(c), u) for c, u in res]}
            OUT["layer"].append(row)
            print(f"   {name} T={t}: loop {loop_us:9.1f} us | best {list(cfg)} {us:8.1f} us "
                  f"({row['TBps']:.2f} TB/s, {row['TFLOPs']:.0f} TFLOP/s) | speed-up {loop_us / us:.1f}x", flush=True)
            best[(e, i, moe_kernels.t_bucket(t))] = cfg
            if t == 1:
                breakdown(name, m, rs, xs[0], cfg)
        m = None
        free()
    return best


def e2e(args) -> None:
    from ember.bench import datasets, engine_bench
    from ember.bench.model import build_random_model, load_bench_config, make_engine
    from ember.config import EngineConfig, KvCacheConfig

    for name, layers in (("qwen3-30b-a3b", None), ("mixtral-8x7b", 8)):
        if time.perf_counter() - T0 > args.budget_s:
            print(f"   skipped {name}: over budget", flush=True)
            continue
        cfg = load_bench_config(name)
        label = name if layers is None else f"{name} ({layers} of {cfg.num_hidden_layers} layers)"
        if layers is not None:
            cfg.num_hidden_layers = layers
        model = None
        try:
            t = time.perf_counter()
            model = build_random_model(cfg, torch.bfloat16, torch.device("cuda"))
            gib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**30
            print(f"   {label}: built in {time.perf_counter() - t:.1f} s, {gib:.1f} GiB of weights", flush=True)
            vocab = cfg.vocab_size
            for graphs in (True, False):
                ec = EngineConfig(max_num_seqs=256, max_num_tokens=4096, max_model_len=512, cuda_graphs=graphs,
                                  kv_cache=KvCacheConfig(enable_prefix_caching=False, gpu_memory_utilization=0.92))
                eng = make_engine(model, ec, torch.device("cuda"), torch.bfloat16, 512)
                variants = [("fused", True)] if graphs else [("fused", True), ("loop", False)]
                for variant, fused in variants:
                    if time.perf_counter() - T0 > args.budget_s + 60:
                        break
                    moe.FUSED = fused
                    mode = f"{variant}, {'CUDA graphs' if graphs else 'eager'}"
                    out_len = 128 if fused else 16
                    lat = engine_bench.latency(eng, datasets.synthetic(1, 128, out_len, vocab, seed=1))
                    n_req, out_tp = (256, 128) if fused and graphs else (32, 16)
                    tp = engine_bench.throughput(eng, datasets.synthetic(n_req, 128, out_tp, vocab, seed=2))
                    row = {"model": label, "mode": mode, "b1_tok_s": lat["decode_tokens_per_s"],
                           "b1_itl_p50_ms": lat["itl_p50_ms"], "b1_out": out_len,
                           "tp_requests": f"{n_req} x 128/{out_tp}", "tp_out_tok_s": tp["output_tokens_per_s"],
                           "tp_total_tok_s": tp["total_tokens_per_s"], "peak_gib": tp["peak_memory_gib"]}
                    OUT["e2e"].append(row)
                    print(f"   {label} {mode}: b1 {row['b1_tok_s']:.1f} tok/s (ITL p50 {row['b1_itl_p50_ms']:.2f} ms)"
                          f" | {row['tp_requests']}: {row['tp_out_tok_s']:.0f} out tok/s", flush=True)
                moe.FUSED = True
                eng = None
                free()
        except Exception:  # noqa: BLE001 - report and go on to the next model
            traceback.print_exc()
            OUT["e2e"].append({"model": label, "mode": "FAILED"})
        moe.FUSED = True
        model = None
        free()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    ap.add_argument("--budget-s", type=float, default=240.0, help="start no new whole-model section after this")
    ap.add_argument("--skip-e2e", action="store_true")
    ap.add_argument("--no-sweep", action="store_true", help="time only the configs in moe_kernels.TABLE (faster)")
    args = ap.parse_args()
    global SWEEP
    SWEEP = not args.no_sweep
    Path(args.out).mkdir(parents=True, exist_ok=True)
    dev = f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    print(dev, flush=True)
    for section in (correctness, layer_times):
        try:
            result = section()
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            result = None
        print(f"{section.__name__} done at {time.perf_counter() - T0:.0f} s", flush=True)
    if result:
        moe_kernels.TABLE.clear()
        moe_kernels.TABLE.update(result)          # part 3 runs with the configs just measured
    OUT["table"] = {str(key): list(c) for key, c in moe_kernels.TABLE.items()}
    if not args.skip_e2e:
        e2e(args)
    Path(args.out, "moe_bench.json").write_text(json.dumps(OUT, indent=2, default=str))
    print(f"\n{dev}; bf16 RANDOM weights; total {time.perf_counter() - T0:.0f} s")
    print("| shape | T | fused rel err | loop rel err (both vs fp32 loop) | ok |\n|---|---|---|---|---|")
    for r in OUT["correctness"]:
        print(f"| {r['shape']} | {r['T']} | {r['fused_err']:.2e} | {r['loop_err']:.2e} | {r['ok']} |")
    print("\n| shape | T | loop us | fused us (best cfg) | cfg | DEFAULT cfg us | speed-up | active experts | "
          "TB/s (active expert bytes) | TFLOP/s |\n|---|---|---|---|---|---|---|---|---|---|")
    for r in OUT["layer"]:
        if r["T"] not in SHOWN:
            continue
        tus = f"{r['default_us']:.1f}" if r["default_us"] else "-"
        print(f"| {r['shape']} | {r['T']} | {r['loop_us']:.1f} | {r['best_us']:.1f} | {r['best_cfg']} | {tus} | "
              f"{r['loop_us'] / r['best_us']:.1f}x | {r['active_experts']:.1f} | {r['TBps']:.2f} "
              f"({100 * r['TBps'] / HBM_TBPS:.0f}% of {HBM_TBPS}) | {r['TFLOPs']:.0f} "
              f"({100 * r['TFLOPs'] / BF16_TFLOPS:.0f}%) |")
    print("\n| shape | T=1 stage us: align | gate_up+act (TB/s) | down*w (TB/s) | sum over K |\n|---|---|---|---|---|")
    for r in OUT.get("breakdown", []):
        print(f"| {r['shape']} | {r['align']:.1f} | {r['gate_up+act']:.1f} ({r['gate_up_TBps']:.2f}) | "
              f"{r['down*w']:.1f} ({r['down_TBps']:.2f}) | {r['sum_k']:.1f} |")
    print("\n| model | mode | b1 decode tok/s (out len) | ITL p50 ms | offline requests | out tok/s | total tok/s | "
          "peak GiB |\n|---|---|---|---|---|---|---|---|")
    for r in OUT["e2e"]:
        if "b1_tok_s" in r:
            print(f"| {r['model']} | {r['mode']} | {r['b1_tok_s']:.1f} ({r['b1_out']}) | {r['b1_itl_p50_ms']:.2f} | "
                  f"{r['tp_requests']} | {r['tp_out_tok_s']:.0f} | {r['tp_total_tok_s']:.0f} | "
                  f"{r['peak_gib'] or 0:.1f} |")
        else:
            print(f"| {r['model']} | {r['mode']} | | | | | | |")
    print("\nTABLE = {")
    for (e, i, b), c in sorted(moe_kernels.TABLE.items()):
        bucket = "BIG" if b == moe_kernels.BIG else b
        print(f"    ({e}, {i}, {bucket}): Config{tuple(c)},")
    print("}")


if __name__ == "__main__":
    main()
