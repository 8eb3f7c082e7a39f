"""One GPU run for the host-overhead work: the same workloads on whichever `ember` is on PYTHONPATH (run it once per
tree to compare), Qwen3-8B shape, RANDOM bf16 weights built on the GPU.

    python benchmarks/make_shim.py /tmp/shim && PYTHONPATH=/tmp/shim python benchmarks/gpu_host_ab.py --label new \
        --out $OUT

Rows: batch-1 decode (128 in / 128 out), offline 1000 x 128/128 at max_num_seqs 512, ShareGPT lengths (1000
requests, max_num_seqs 512, max_model_len 4096), and where the tree has them, prefill 8 x 2048 and TTFT of one
2048-token prompt. `--modes sync async` runs the decode rows once per scheduling mode (async scheduling on/off,
same model, same process) for an A/B. Prints a markdown table last and writes <label>.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import traceback
from pathlib import Path

import torch

from ember.bench import datasets, engine_bench
from ember.bench.model import build_random_model, load_bench_config, make_engine
from ember.config import EngineConfig, KvCacheConfig

ROWS: list[dict] = []


def engine(model, max_num_seqs: int, max_len: int, num_blocks: int | None, max_num_tokens: int = 8192,
           mode: str | None = None):
    extra = {} if mode is None else {"async_scheduling": mode == "async"}
    cfg = EngineConfig(max_num_seqs=max_num_seqs, max_num_tokens=max_num_tokens, max_model_len=max_len,
                       kv_cache=KvCacheConfig(num_blocks=num_blocks, enable_prefix_caching=False,
                                          gpu_memory_utilization=0.9), **extra)
    return make_engine(model, cfg, torch.device("cuda"), torch.bfloat16, max_len)


def free() -> None:
    gc.collect()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()


def guarded(name, fn, *a):
    t0 = time.perf_counter()
    try:
        fn(*a)
    except Exception:  # noqa: BLE001 - keep the other rows
        traceback.print_exc()
        ROWS.append({"what": name, "note": "FAILED"})
    print(f"   {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    free()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", required=True)
    ap.add_argument("--out", default=".")
    ap.add_argument("--skip", nargs="*", default=[])
    ap.add_argument("--modes", nargs="*", default=[None], help="sync / async: one run of each decode row per mode")
    args = ap.parse_args()
    cfg = load_bench_config("qwen3-8b")
    vocab = cfg.vocab_size
    model = build_random_model(cfg, torch.bfloat16, torch.device("cuda"))
    res: dict = {}

    def b1(mode):
        eng = engine(model, 8, 256, 512, mode=mode)
        r = engine_bench.latency(eng, datasets.synthetic(1, 128, 128, vocab, seed=2), warmup=1)
        r.pop("tokens")
        res[f"b1 {mode}"] = r
        ROWS.append({"what": f"batch-1 decode, 128 in / 128 out (tok/s) {mode or ''}", "value": r["decode_tokens_per_s"],
                     "note": f"TTFT {r['ttft_ms']:.1f} ms, ITL p50 {r['itl_p50_ms']:.3f} ms"})

    def offline(mode):
        eng = engine(model, 512, 256, 512 * 16 + 64, mode=mode)
        r = engine_bench.throughput(eng, datasets.synthetic(1000, 128, 128, vocab, seed=4), warmup=1)
        res[f"offline {mode}"] = r
        ROWS.append({"what": f"offline 1000 x 128/128, max_num_seqs 512 (out tok/s) {mode or ''}",
                     "value": r["output_tokens_per_s"],
                     "note": f"{r['steps']} steps, {r['elapsed_s']:.2f} s, peak {r.get('peak_memory_gib', 0):.1f} GiB"})

    def sharegpt(mode):
        eng = engine(model, 512, 4096, None, mode=mode)
        reqs = datasets.sharegpt(1000, vocab, "benchmarks/data/sharegpt_lengths.json", 4096)
        r = engine_bench.throughput(eng, reqs, warmup=1)
        res[f"sharegpt {mode}"] = r
        ROWS.append({"what": f"ShareGPT lengths, 1000 req, max_num_seqs 512 (out tok/s) {mode or ''}",
                     "value": r["output_tokens_per_s"],
                     "note": f"{r['steps']} steps, {r['elapsed_s']:.2f} s, peak {r.get('peak_memory_gib', 0):.1f} GiB"})

    def prefill():
        eng = engine(model, 8, 2048 + 8, 8 * 130, max_num_tokens=16384)
        reqs = datasets.synthetic(8, 2048, 1, vocab, seed=5)
        r = engine_bench.prefill(eng, reqs)
        res["prefill"] = r
        ROWS.append({"what": "prefill 8 x 2048 in one step (TFLOP/s)", "value": r["tflops"],
                     "note": f"{r['pct_of_peak']:.1f}% of 787; {r['elapsed_s'] * 1e3:.1f} ms, "
                             f"{r['prefill_tokens_per_s']:,.0f} tok/s, {r['model_tflop']:.1f} TFLOP"})
        t = engine_bench.ttft(eng, reqs[0])
        res["ttft"] = t
        ROWS.append({"what": "TTFT, one 2048-token prompt (ms)", "value": t["ttft_ms"],
                     "note": f"min {t['ttft_min_ms']:.1f} ms, peak {t['peak_memory_gib']:.1f} GiB"})

    for name, fn in (("b1", b1), ("offline", offline), ("sharegpt", sharegpt)):
        for mode in args.modes:
            if name not in args.skip:
                guarded(f"{name} {mode or ''}", fn, mode)
    if "prefill" not in args.skip and hasattr(engine_bench, "prefill"):
        guarded("prefill", prefill)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, f"{args.label}.json").write_text(json.dumps(res, indent=2, default=str))
    print(f"\n{torch.cuda.get_device_name()}, torch {torch.__version__}, qwen3-8b shape, bf16 RANDOM weights, "
          f"tree: {args.label}")
    print("| tree | what | value | note |\n|---|---|---|---|")
    for r in ROWS:
        v = r.get("value")
        print(f"| {args.label} | {r['what']} | {v:,.1f} | {r.get('note', '')} |" if v is not None
              else f"| {args.label} | {r['what']} | | {r.get('note', '')} |")


if __name__ == "__main__":
    main()
