"""`ember bench` driver: builds the model (random weights or a checkpoint), runs a workload, reports."""

from __future__ import annotations

import gc
import json
from typing import Any

import torch

from ember.bench import datasets
from ember.bench.engine_bench import latency, prefill, throughput, throughput_sweep, ttft
from ember.bench.report import table, write_json
from ember.config import EngineConfig, KvCacheConfig

_DTYPES = {"bfloat16": torch.bfloat16, "float16": torch.float16, "float32": torch.float32}


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def engine_config(args, device: torch.device, max_model_len: int) -> EngineConfig:
    kv = KvCacheConfig(num_blocks=args.num_blocks, gpu_memory_utilization=args.gpu_memory_utilization,
                       enable_prefix_caching=False)   # random prompts share nothing; skip the hashing
    async_scheduling = {"auto": None, "on": True, "off": False}[getattr(args, "async_scheduling", "auto")]
    return EngineConfig(max_num_seqs=args.max_num_seqs, max_num_tokens=args.max_num_tokens,
                        max_model_len=max_model_len, kv_cache=kv, attention_backend=args.attention_backend,
                        cuda_graphs=not args.enforce_eager, seed=args.seed,
                        kv_cache_dtype=getattr(args, "kv_cache_dtype", "auto"), async_scheduling=async_scheduling)


def _max_len(args, requests: list[datasets.BenchRequest]) -> int:
    return args.max_model_len or max(len(r.prompt_ids) + r.output_len for r in requests)


def build_ember(args, requests: list[datasets.BenchRequest]):
    """(engine, hf_config) for --random-weights (bundled config) or a checkpoint loaded through LLM."""
    device, dtype = _device(args.device), _DTYPES[args.dtype]
    max_len = _max_len(args, requests)
    cfg = engine_config(args, device, max_len)
    if args.random_weights:
        from ember.bench.model import build_random_model, load_bench_config, make_engine

        hf_config = load_bench_config(args.model)
        model = build_random_model(hf_config, dtype, device, seed=args.seed)
        if getattr(args, "quantization", None):
            from ember.quantization.random_quant import quantize_random_

            quantize_random_(model, args.quantization)
        return make_engine(model, cfg, device, dtype, max_len), hf_config
    if getattr(args, "quantization", None):
        raise ValueError("--quantization quantizes random weights: use it with --random-weights (a quantized "
                         "checkpoint carries its own format)")
    from ember import LLM

    llm = LLM(args.model, dtype=args.dtype, device=str(device), max_num_seqs=cfg.max_num_seqs,
              max_num_tokens=cfg.max_num_tokens, max_model_len=max_len, kv_cache=cfg.kv_cache,
              attention_backend=cfg.attention_backend, seed=args.seed, kv_cache_dtype=cfg.kv_cache_dtype,
              async_scheduling=cfg.async_scheduling, cuda_graphs=cfg.cuda_graphs)
    return llm.engine, llm.model.config


def vocab_size_of(args) -> int:
    if args.random_weights:
        from ember.bench.model import load_bench_config
        return load_bench_config(args.model).vocab_size
    from ember.loader.build import load_config
    from ember.loader.resolve import resolve_model
    return load_config(resolve_model(args.model)).vocab_size


def workload(args, vocab: int) -> list[datasets.BenchRequest]:
    if args.command_kind == "prefill":
        if args.max_num_tokens is None:   # the whole batch in one step unless told otherwise
            args.max_num_tokens = args.batch_size * args.input_len
        return datasets.synthetic(args.batch_size, args.input_len, 1, vocab, seed=args.seed)
    if args.command_kind == "latency":
        return datasets.synthetic(args.batch_size, args.input_len, args.output_len, vocab, seed=args.seed)
    if args.dataset == "sharegpt":
        return datasets.sharegpt(args.num_requests, vocab, args.dataset_path, args.max_model_len or 4096, args.seed)
    return datasets.synthetic(args.num_requests, args.input_len, args.output_len, vocab, args.dist, args.seed)


def run_hf(args, requests: list[datasets.BenchRequest]) -> dict[str, Any]:
    """transformers generate on the same config, at small scale (--hf-num-requests, --hf-output-len)."""
    from ember.bench.hf_baseline import build_hf_model, hf_generate
    from ember.bench.model import load_bench_config

    device, dtype = _device(args.device), _DTYPES[args.dtype]
    if not args.random_weights:
        raise ValueError("--engine hf needs --random-weights (the baseline builds the same config at random)")
    model = build_hf_model(load_bench_config(args.model), dtype, device, seed=args.seed)
    n = args.hf_num_requests or (args.batch_size if args.command_kind == "latency" else min(len(requests), 32))
    cap = args.hf_output_len   # HF decodes a static batch to its longest output: cap that on long-tail datasets
    small = [datasets.BenchRequest(r.prompt_ids, min(r.output_len, cap) if cap else r.output_len)
             for r in requests[:n]]
    hf_generate(model, small[:1], 1, device) if args.warmup else None
    res = hf_generate(model, small, args.hf_batch_size or n, device)
    del model
    gc.collect()
    torch.cuda.empty_cache() if device.type == "cuda" else None
    return res


def main(args) -> dict[str, Any]:
    """Runs the workload of `args` (`ember bench latency|throughput ...`); prints a table, returns the payload."""
    requests = workload(args, vocab_size_of(args))
    payload: dict[str, Any] = {"command": args.command_kind, "model": args.model,
                               "random_weights": bool(args.random_weights), "dtype": args.dtype,
                               "quantization": getattr(args, "quantization", None),
                               "device": _device_name(_device(args.device))}
    if args.engine == "hf":
        payload["hf"] = run_hf(args, requests)   # first, so its weights are gone before ember sizes its KV cache
    engine, _ = build_ember(args, requests)
    payload["engine_config"] = json.loads(json.dumps(engine.config.__dict__, default=lambda o: o.__dict__))
    sweep = None
    if args.command_kind == "latency":
        res = latency(engine, requests, warmup=args.warmup)
        res.pop("tokens")
        cols = ["batch_size", "input_len", "output_len", "decode_tokens_per_s", "ttft_ms", "itl_p50_ms",
                "itl_p90_ms", "itl_p99_ms", "peak_memory_gib"]
    elif args.command_kind == "prefill":
        res = prefill(engine, requests, peak_tflops=args.peak_tflops)
        res["ttft_1_ms"] = ttft(engine, requests[0])["ttft_ms"]
        cols = ["batch_size", "input_len", "elapsed_s", "prefill_tokens_per_s", "tflops", "pct_of_peak",
                "ttft_1_ms", "peak_memory_gib"]
    else:
        res = throughput(engine, requests, warmup=args.warmup)
        cols = ["num_requests", "elapsed_s", "output_tokens_per_s", "requests_per_s", "total_tokens_per_s",
                "peak_memory_gib"]
        if args.concurrency:
            sweep = throughput_sweep(engine, requests, args.concurrency)
            payload["concurrency_sweep"] = sweep
    payload["ember"] = {"engine": "ember", "attention_backend": engine.config.attention_backend,
                        "cuda_graphs": engine.runner.graphs is not None, **res}
    rows = [payload["ember"]]
    if "hf" in payload:
        hf = payload["hf"]
        key = "decode_tokens_per_s" if args.command_kind == "latency" else "output_tokens_per_s"
        payload["ratio_vs_hf"] = res[key] / hf["output_tokens_per_s"]
        rows.append({"engine": "hf", key: hf["output_tokens_per_s"], "num_requests": hf["num_requests"],
                     "batch_size": hf["batch_size"], "elapsed_s": hf["elapsed_s"]})
    print(table(rows, ["engine"] + cols))
    if "ratio_vs_hf" in payload:
        print(f"ember / hf: {payload['ratio_vs_hf']:.1f}x (hf: {payload['hf']['num_requests']} requests, "
              f"{payload['hf']['output_tokens']} new tokens, batch {payload['hf']['batch_size']})")
    if sweep:
        print(table(sweep, ["concurrency", "output_tokens_per_s", "requests_per_s", "elapsed_s", "peak_memory_gib"]))
    if args.plot:
        payload["plots"] = [str(p) for p in _plots(args, res, sweep)]
        print("plots: " + ", ".join(payload["plots"]))
    write_json(args.output, payload)
    return payload


def _plots(args, res: dict[str, Any], sweep: list[dict[str, Any]] | None) -> list:
    from ember.bench import plot

    title = f"{args.model} ({'random weights' if args.random_weights else 'checkpoint'}, {args.dtype})"
    out = []
    if args.command_kind == "latency":
        out.append(plot.latency_percentiles(res, f"{args.plot}_latency.png", title))
    if sweep:
        out.append(plot.throughput_vs_concurrency(sweep, f"{args.plot}_throughput.png", title))
    if not out:
        raise ValueError("--plot draws latency percentiles (bench latency) or throughput vs concurrency "
                         "(bench throughput --concurrency ...); nothing to draw for this command")
    return out


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
