"""Where a decode step's GPU time goes, per kernel, for bf16 and quantized models (RANDOM Qwen3-8B weights).

    python benchmarks/make_shim.py /tmp/shim && PYTHONPATH=/tmp/shim python benchmarks/decode_profile.py \
        --methods bf16,nvfp4,int4-awq --batch-sizes 1,64

Per method and batch size: one latency run (128 prompt tokens, --out new tokens, CUDA graphs, triton attention) for
tok/s and ITL, then the same run under torch.profiler; kernels are listed by GPU time per decode step (the prefill
step's kernels are spread over the steps too, which is why the GEMM kernel counts run a little above 4 per layer).
"""

from __future__ import annotations

import argparse

import torch
from graph_profile import kernel_rows  # benchmarks/ is on sys.path when run as a script
from quant_bench import decode_engine
from torch.profiler import ProfilerActivity, profile

from ember.bench import datasets, engine_bench
from ember.bench.model import build_random_model, load_bench_config
from ember.quantization.random_quant import quantize_random_


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="bf16,nvfp4")
    ap.add_argument("--batch-sizes", default="1,64")
    ap.add_argument("--out", type=int, default=40, help="new tokens per request")
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args()
    cfg = load_bench_config("qwen3-8b")
    for method in args.methods.split(","):
        model = build_random_model(cfg, torch.bfloat16, torch.device("cuda"))
        if method != "bf16":
            quantize_random_(model, method)
        eng = decode_engine(model)     # the engine quant_bench.py's end-to-end rows use
        for b in [int(v) for v in args.batch_sizes.split(",")]:
            reqs = datasets.synthetic(b, 128, args.out, cfg.vocab_size, seed=2)
            r = engine_bench.latency(eng, reqs, warmup=1)
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                engine_bench.latency(eng, reqs, warmup=0)
            torch.cuda.synchronize()
            rows = kernel_rows(prof, args.out - 1)                                    # per decode step
            total = sum(t for t, _, _ in rows)
            print(f"== {method} batch {b}: {r['decode_tokens_per_s']:.1f} tok/s, ITL p50 {r['itl_p50_ms']:.3f} ms, "
                  f"GPU kernel time {total:.0f} us per step (prefill included)", flush=True)
            for t, c, k in rows[:args.top]:
                print(f"   {t:8.1f} us/step  {c:6.1f}/step  {k[:100]}")
        eng = model = None
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
