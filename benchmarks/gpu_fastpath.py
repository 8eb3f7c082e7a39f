"""One GPU-machine run for the decode fast path: correctness, batch-1 decode, offline throughput, HF baseline, profile.

    python benchmarks/make_shim.py /tmp/shim && PYTHONPATH=/tmp/shim python benchmarks/gpu_fastpath.py \
        --model qwen3-8b --out $OUT

Everything uses the architecture at real size with RANDOM bf16 weights built on the GPU (speed does not depend on
the values). Prints one table at the end and writes results.json (and a profile table) into --out.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import traceback
from pathlib import Path

import torch

import ember.layers.fused
from graph_profile import graph_kernel_rows  # benchmarks/ is on sys.path when run as a script
from ember.bench import datasets
from ember.bench.engine_bench import latency, throughput
from ember.bench.model import build_random_model, load_bench_config, make_engine
from ember.config import EngineConfig, KvCacheConfig

ROWS: list[dict] = []
RESULTS: dict = {}


def engine(model, backend: str, graphs: bool, max_num_seqs: int, num_blocks: int, max_len: int,
           max_num_tokens: int = 8192):
    cfg = EngineConfig(max_num_seqs=max_num_seqs, max_num_tokens=max_num_tokens, max_model_len=max_len,
                       kv_cache=KvCacheConfig(num_blocks=num_blocks, enable_prefix_caching=False),
                       attention_backend=backend, cuda_graphs=graphs)
    t0 = time.perf_counter()
    eng = make_engine(model, cfg, torch.device("cuda"), torch.bfloat16, max_len)
    return eng, time.perf_counter() - t0


def free() -> None:
    """Drop what the callers released (engines hold KV caches and graph pools) before the next engine."""
    gc.collect()
    torch.cuda.empty_cache()


def section(name: str):
    def wrap(fn):
        def run(*a, **k):
            t0 = time.perf_counter()
            print(f"== {name}", flush=True)
            try:
                return fn(*a, **k)
            except Exception:  # noqa: BLE001 - keep the other sections going, report the failure
                traceback.print_exc()
                ROWS.append({"what": name, "note": "FAILED (see log)"})
            finally:
                print(f"   {name}: {time.perf_counter() - t0:.1f} s", flush=True)
        return run
    return wrap


@section("hf generate baseline")
def hf_baseline(args, cfg, vocab):
    from ember.bench.hf_baseline import build_hf_model, hf_generate

    model = build_hf_model(cfg, torch.bfloat16, torch.device("cuda"))
    for bs in (1, 32):
        reqs = datasets.synthetic(bs, args.input_len, args.hf_tokens, vocab, seed=1)
        hf_generate(model, reqs[:1], 1, torch.device("cuda")) if bs == 1 else None   # warm-up
        res = hf_generate(model, reqs, bs, torch.device("cuda"))
        RESULTS[f"hf_b{bs}"] = res
        ROWS.append({"what": f"HF generate eager, batch {bs}, {args.input_len} in / {args.hf_tokens} out",
                     "tok_s": res["output_tokens_per_s"]})
    model = None
    free()


@section("batch-1 latency variants")
def latency_variants(args, model, vocab):
    reqs = datasets.synthetic(1, args.input_len, args.output_len, vocab, seed=2)
    max_len = args.input_len + args.output_len
    tokens = {}
    variants = [("torch", False, False), ("triton", False, False), ("triton", True, False),
                ("torch", False, True), ("triton", False, True), ("triton", True, True)]
    for backend, graphs, fused in variants:
        ember.layers.fused.ENABLED = fused     # read at trace time: graphs capture whichever path is on
        eng, build_s = engine(model, backend, graphs, 32, 1024, max_len)
        res = latency(eng, reqs, warmup=1)
        name = f"{backend} {'graphs' if graphs else 'eager'} {'fused' if fused else 'unfused'}"
        tokens[name] = res.pop("tokens")[0]
        RESULTS[f"latency_b1_{name}"] = {**res, "engine_build_s": build_s}
        ROWS.append({"what": f"ember {name}, batch 1, {args.input_len} in / {args.output_len} out",
                     "tok_s": res["decode_tokens_per_s"], "ttft_ms": res["ttft_ms"], "itl_p50": res["itl_p50_ms"],
                     "itl_p99": res["itl_p99_ms"]})
        if graphs:
            step_profile(eng, 1, name, args)
        eng = None
        free()
    ember.layers.fused.ENABLED = True
    for ref_name, names in (("torch eager unfused", ["triton eager unfused", "triton graphs unfused"]),
                            ("triton eager fused", ["triton graphs fused", "torch eager fused"])):
        ref = tokens[ref_name]
        for name in names:
            same = next((i for i, (a, b) in enumerate(zip(ref, tokens[name])) if a != b), len(ref))
            RESULTS[f"bf16_tokens_{name}_vs_{ref_name}"] = same
            print(f"   bf16 real-shape greedy tokens: {name} equal to {ref_name} for the first {same}/{len(ref)}")


def step_profile(eng, bs: int, name: str, args) -> None:
    """GPU time of one bucket-`bs` graph replay (events, median of 20) and its kernel time per kind (CUPTI sees
    the kernels inside graphs): the step without any host work."""
    g = eng.runner.graphs.graphs[bs]
    for _ in range(3):
        g.replay()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    times = []
    for _ in range(20):
        start.record()
        g.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    ms = sorted(times)[len(times) // 2]
    RESULTS[f"graph_replay_b{bs}_{name}_ms"] = ms
    ROWS.append({"what": f"  graph replay alone, batch {bs}, {name} (GPU time)", "tok_s": bs * 1e3 / ms,
                 "itl_p50": ms})
    rows = graph_kernel_rows(g)
    total = sum(r[0] for r in rows)
    lines = [f"-- batch {bs}, {name}: {total:.0f} us of kernels per step, {sum(r[1] for r in rows)} kernels",
             f"{'us/step':>9} {'%':>5} {'calls':>5}  kernel"]
    lines += [f"{t:9.1f} {100 * t / total:5.1f} {c:5d}  {k[:100]}" for t, c, k in rows[:14]]
    text = "\n".join(lines)
    print(text)
    with open(Path(args.out, "profiles.txt"), "a") as f:
        f.write(text + "\n\n")


@section("batch-32 decode")
def batch32(args, model, vocab):
    reqs = datasets.synthetic(32, args.input_len, args.output_len, vocab, seed=3)
    eng, _ = engine(model, "triton", True, 32, 2048, args.input_len + args.output_len)
    res = latency(eng, reqs, warmup=1)
    res.pop("tokens")
    step_profile(eng, 32, "triton graphs fused", args)
    RESULTS["latency_b32_triton_graphs"] = res
    ROWS.append({"what": f"ember triton graphs, batch 32, {args.input_len} in / {args.output_len} out",
                 "tok_s": res["decode_tokens_per_s"], "ttft_ms": res["ttft_ms"], "itl_p50": res["itl_p50_ms"],
                 "itl_p99": res["itl_p99_ms"]})
    eng = None
    free()


@section("offline throughput")
def offline(args, model, vocab):
    for max_seqs in args.max_num_seqs:
        reqs = datasets.synthetic(args.num_requests, args.input_len, args.output_len, vocab, seed=4)
        max_len = args.input_len + args.output_len
        blocks = max_seqs * -(-max_len // 16) + 64
        eng, build_s = engine(model, "triton", True, max_seqs, blocks, max_len, max_num_tokens=args.max_num_tokens)
        res = throughput(eng, reqs, warmup=1)
        step_profile(eng, max_seqs, f"max_num_seqs {max_seqs}", args)
        RESULTS[f"throughput_{max_seqs}"] = {**res, "engine_build_s": build_s}
        ROWS.append({"what": f"ember offline {args.num_requests} x {args.input_len}/{args.output_len}, "
                             f"max_num_seqs {max_seqs}", "tok_s": res["output_tokens_per_s"],
                     "note": f"{res['requests_per_s']:.1f} req/s, {res['steps']} steps, "
                             f"{res['elapsed_s']:.1f} s, build {build_s:.1f} s"})
        eng = None
        free()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="qwen3-8b")
    ap.add_argument("--out", default=".")
    ap.add_argument("--input-len", type=int, default=128)
    ap.add_argument("--output-len", type=int, default=128)
    ap.add_argument("--hf-tokens", type=int, default=32)
    ap.add_argument("--num-requests", type=int, default=1000)
    ap.add_argument("--max-num-seqs", type=int, nargs="+", default=[256])
    ap.add_argument("--max-num-tokens", type=int, default=8192)
    ap.add_argument("--skip", nargs="*", default=[])
    args = ap.parse_args()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    cfg = load_bench_config(args.model)
    vocab = cfg.vocab_size
    print(torch.cuda.get_device_name(), torch.__version__, flush=True)
    if "hf" not in args.skip:
        hf_baseline(args, cfg, vocab)
    t0 = time.perf_counter()
    model = build_random_model(cfg, torch.bfloat16, torch.device("cuda"))
    n = sum(p.numel() for p in model.parameters())
    print(f"ember {args.model}: {n / 1e9:.2f} B params, random bf16, built in {time.perf_counter() - t0:.1f} s")
    if "latency" not in args.skip:
        latency_variants(args, model, vocab)
    if "b32" not in args.skip:
        batch32(args, model, vocab)
    if "throughput" not in args.skip:
        offline(args, model, vocab)
    Path(args.out, "results.json").write_text(json.dumps(RESULTS, indent=2, default=str))
    from ember.bench.report import table

    print(f"\n{torch.cuda.get_device_name()}, {args.model} shape, bf16 RANDOM weights")
    print(table(ROWS, ["what", "tok_s", "ttft_ms", "itl_p50", "itl_p99", "note"]))


if __name__ == "__main__":
    main()
