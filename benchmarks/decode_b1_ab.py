"""One GPU run: batch-1 decode A/B for async scheduling and the act-and-mul folded into down_proj's GEMV.

    python benchmarks/make_shim.py /tmp/shim && PYTHONPATH=/tmp/shim python benchmarks/decode_b1_ab.py --out $OUT

1. down_proj (4096 x 12288) at M = 1, 2: act-and-mul kernel + skinny GEMM vs the gated prologue (a few configs),
   timed in CUDA graphs cycling over 36 weight copies (HBM reads, as 36 layers), median of replays.
2. End to end, Qwen3-8B shape, RANDOM bf16 weights, 128 in / 128 out, CUDA graphs, triton attention, one model:
   sync (the previous default) / async scheduling / async + gated prologue; batch 1 and batch 32. Tok/s, ITL,
   graph replay GPU time, greedy tokens vs sync. Prints a table last; writes decode_b1_ab.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
import traceback
from pathlib import Path

import torch
from decode_b1 import replay_ms
from graph_profile import graph_time_us  # benchmarks/ is on sys.path when run as a script

from ember.layers import gemv
from ember.layers.activation import SiluAndMul
from ember.layers.gemv import Config

OUT: dict = {}


def micro() -> list[dict]:
    n, k = 4096, 12288
    copies = 36
    ws = [torch.randn(n, k, device="cuda", dtype=torch.bfloat16) * k ** -0.5 for _ in range(copies)]
    act = SiluAndMul()
    rows = []
    for m in (1, 2):
        h = torch.randn(m, 2 * k, device="cuda", dtype=torch.bfloat16)
        base_cfg = gemv.TABLE[(n, k, m)]
        ref = gemv.skinny_linear(act(h), ws[0], None, base_cfg)
        t_base = graph_time_us(lambda i: gemv.skinny_linear(act(h), ws[i % copies], None, base_cfg), copies)
        for cfg in (Config("ew", 8, 1024, 4), Config("ew", 4, 1024, 4), Config("ew", 8, 512, 4),
                    Config("ew", 16, 512, 8), Config("ew", 4, 512, 4)):
            try:
                y = gemv.gated_linear(h, ws[0], None, "silu", cfg)
                same = bool(torch.equal(y, ref))
                diff = (y.float() - ref.float()).abs().max().item()
                t = graph_time_us(lambda i: gemv.gated_linear(h, ws[i % copies], None, "silu", cfg), copies)
            except Exception as e:  # noqa: BLE001
                print(f"   M={m} {cfg}: FAILED {e!r}"[:300], flush=True)
                continue
            rows.append({"M": m, "cfg": list(cfg), "gated_us": t, "act+gemv_us": t_base, "bitwise_equal": same,
                         "max_abs_diff": diff})
            print(f"   M={m} {cfg}: gated {t:.1f} us vs act+gemv {t_base:.1f} us, equal={same} diff={diff:.2e}",
                  flush=True)
    OUT["micro"] = rows
    return rows


def e2e() -> list[dict]:
    from ember.bench import datasets, engine_bench
    from ember.bench.model import build_random_model, load_bench_config, make_engine
    from ember.config import EngineConfig, KvCacheConfig

    cfg = load_bench_config("qwen3-8b")
    model = build_random_model(cfg, torch.bfloat16, torch.device("cuda"))
    rows, tokens = [], {}
    for bs in (1, 32):
        for label, use_async, use_gated in (("sync", False, False), ("async", True, False),
                                            ("async+gated", True, True)):
            gemv.GATED = use_gated                                     # read at capture time
            try:
                ec = EngineConfig(max_num_seqs=8 if bs == 1 else 32, max_num_tokens=8192, max_model_len=256,
                                  kv_cache=KvCacheConfig(num_blocks=512 if bs == 1 else 2048,
                                                         enable_prefix_caching=False),
                                  attention_backend="triton", cuda_graphs=True, async_scheduling=use_async)
                eng = make_engine(model, ec, torch.device("cuda"), torch.bfloat16, 256)
                reqs = datasets.synthetic(bs, 128, 128, cfg.vocab_size, seed=2 if bs == 1 else 3)
                r = engine_bench.latency(eng, reqs, warmup=1)
                toks = r.pop("tokens")
                tokens[(bs, label)] = toks
                ms = replay_ms(eng, bs)
                ref = tokens[(bs, "sync")]
                eq = sum(a == b for a, b in zip(ref, toks))
                rows.append({"batch": bs, "variant": label, "tok_s": r["decode_tokens_per_s"],
                             "itl_p50_ms": r["itl_p50_ms"], "replay_ms": ms, "ttft_ms": r["ttft_ms"],
                             "same_tokens": f"{eq}/{len(ref)}"})
                print(f"   b{bs} {label}: {r['decode_tokens_per_s']:.1f} tok/s, ITL p50 {r['itl_p50_ms']:.3f} ms, "
                      f"replay {ms:.3f} ms, same tokens {eq}/{len(ref)}", flush=True)
            except Exception:  # noqa: BLE001
                traceback.print_exc()
                rows.append({"batch": bs, "variant": label, "same_tokens": "FAILED"})
            eng = None
            gc.collect()
            torch.cuda.empty_cache()
    OUT["e2e"] = rows
    return rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=".")
    args = ap.parse_args()
    dev = f"{torch.cuda.get_device_name()}, torch {torch.__version__}"
    print(dev, flush=True)
    t0 = time.perf_counter()
    micro()
    print(f"micro {time.perf_counter() - t0:.1f} s", flush=True)
    rows = e2e()
    Path(args.out).mkdir(parents=True, exist_ok=True)
    Path(args.out, "decode_b1_ab.json").write_text(json.dumps(OUT, indent=2, default=str))
    print(f"\n{dev}; Qwen3-8B shape, bf16 RANDOM weights, 128 in / 128 out, CUDA graphs, triton attention")
    print("| batch | variant | decode tok/s | ITL p50 ms | graph replay ms | TTFT ms | greedy tokens == sync |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        if "tok_s" in r:
            print(f"| {r['batch']} | {r['variant']} | {r['tok_s']:,.1f} | {r['itl_p50_ms']:.3f} | "
                  f"{r['replay_ms']:.3f} | {r['ttft_ms']:.1f} | {r['same_tokens']} |")
        else:
            print(f"| {r['batch']} | {r['variant']} | FAILED | | | | |")


if __name__ == "__main__":
    main()
