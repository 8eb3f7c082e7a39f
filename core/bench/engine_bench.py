"""Latency and offline throughput of an LLMEngine over token-id requests (wall clock, host syncs only at steps)."""

from __future__ import annotations

import time
from typing import Any

import torch

from ember.bench.datasets import BenchRequest
from ember.bench.report import percentiles
from ember.engine.llm_engine import LLMEngine
from ember.sampling_params import SamplingParams


def _params(output_len: int) -> SamplingParams:
    # Token-id prompts, outputs never read as text: skip detokenization (as vLLM's benchmarks do).
    return SamplingParams(temperature=0.0, max_tokens=output_len, ignore_eos=True, detokenize=False)


def _peak_gib(engine: LLMEngine) -> float | None:
    return torch.cuda.max_memory_allocated(engine.device) / 2**30 if engine.device.type == "cuda" else None


def _sync(engine: LLMEngine) -> None:
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)


def run_requests(engine: LLMEngine, requests: list[BenchRequest], stream: bool = True) -> dict[str, Any]:
    """Add all requests, step until done; per request: add time, time of each new token (host clock after the
    step that produced it: each step ends with the sampled ids on the host). stream=False: outputs come only
    when a request finishes (offline throughput; the stamps then hold only the finish time)."""
    _sync(engine)
    t0 = time.perf_counter()
    ids = [engine.add_request(r.prompt_ids, _params(r.output_len), stream=stream) for r in requests]
    stamps: dict[str, list[float]] = {rid: [] for rid in ids}
    tokens: dict[str, list[int]] = {}
    steps = 0
    while engine.has_unfinished():
        outs = engine.step()
        now = time.perf_counter()
        steps += 1
        for out in outs:
            stamps[out.request_id] += [now] * len(out.outputs[0].delta_token_ids)
            if out.finished:
                if out.error:
                    raise RuntimeError(f"request {out.request_id} failed: {out.error}")
                tokens[out.request_id] = out.outputs[0].token_ids
    elapsed = time.perf_counter() - t0
    return {"t0": t0, "elapsed": elapsed, "stamps": [stamps[r] for r in ids], "tokens": [tokens[r] for r in ids],
            "steps": steps}


def latency(engine: LLMEngine, requests: list[BenchRequest], warmup: int = 1) -> dict[str, Any]:
    """Batch of len(requests) started together: TTFT, inter-token latency percentiles, decode tokens/s."""
    for _ in range(warmup):
        run_requests(engine, [BenchRequest(r.prompt_ids, min(r.output_len, 8)) for r in requests])
    run = run_requests(engine, requests)
    ttft = [s[0] - run["t0"] for s in run["stamps"]]
    itl = [b - a for s in run["stamps"] for a, b in zip(s, s[1:])]
    first, last = max(s[0] for s in run["stamps"]), max(s[-1] for s in run["stamps"])
    decoded = sum(len(s) - 1 for s in run["stamps"])
    res = {"batch_size": len(requests), "input_len": len(requests[0].prompt_ids),
           "output_len": requests[0].output_len, "elapsed_s": run["elapsed"],
           "decode_tokens_per_s": decoded / (last - first) if last > first else float("nan"),
           "ttft_ms": 1e3 * sum(ttft) / len(ttft)}
    res.update({f"itl_{k}_ms": 1e3 * v for k, v in percentiles(itl).items()})
    res["tokens"] = run["tokens"]
    res["peak_memory_gib"] = _peak_gib(engine)
    return res


def throughput(engine: LLMEngine, requests: list[BenchRequest], warmup: int = 1) -> dict[str, Any]:
    """All requests queued at once (offline): output tokens/s, requests/s, total tokens/s."""
    if warmup:
        run_requests(engine, requests[:min(len(requests), 8)])
    if engine.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(engine.device)
    run = run_requests(engine, requests, stream=False)
    out_tokens = sum(len(t) for t in run["tokens"])
    in_tokens = sum(len(r.prompt_ids) for r in requests)
    res = {"num_requests": len(requests), "elapsed_s": run["elapsed"], "steps": run["steps"],
           "output_tokens": out_tokens, "output_tokens_per_s": out_tokens / run["elapsed"],
           "requests_per_s": len(requests) / run["elapsed"],
           "total_tokens_per_s": (out_tokens + in_tokens) / run["elapsed"]}
    res["peak_memory_gib"] = _peak_gib(engine)
    return res


def throughput_sweep(engine: LLMEngine, requests: list[BenchRequest], concurrency: list[int]) -> list[dict[str, Any]]:
    """Offline throughput with at most c sequences running, for each c (<= the engine's max_num_seqs): the
    scheduler's seat limit is lowered in place, so one engine (one KV cache, one set of graphs) serves all."""
    sched, full = engine.scheduler, engine.scheduler.max_num_seqs
    out = []
    try:
        for i, c in enumerate(sorted(concurrency)):
            if c > full:
                raise ValueError(f"concurrency {c} > max_num_seqs {full}; raise --max-num-seqs")
            sched.max_num_seqs = c
            out.append({"concurrency": c, **throughput(engine, requests, warmup=1 if i == 0 else 0)})
    finally:
        sched.max_num_seqs = full
    return out


def linear_flops_per_token(model: torch.nn.Module) -> tuple[int, int]:
    """(2 x weights touched per prompt token, 2 x lm_head weights per sampled row): every 2-D weight except the
    embedding table (a lookup) and the lm_head (applied only to the rows that sample)."""
    lm_head = getattr(getattr(model, "lm_head", None), "weight", None)
    head = lm_head.numel() if lm_head is not None else 0           # tied: the embedding table, counted here
    body = 0
    for name, p in model.named_parameters():
        if p.dim() < 2 or "embed" in name or p is lm_head:
            continue
        body += p.numel()
    return 2 * body, 2 * head


def attention_flops(config: Any, prompt_len: int) -> float:
    """Causal self-attention FLOPs of one prompt: QK^T and PV over the lower triangle, every layer."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    return 2 * 2 * config.num_hidden_layers * heads * head_dim * prompt_len * (prompt_len + 1) / 2


def prefill(engine: LLMEngine, requests: list[BenchRequest], repeats: int = 3,
            peak_tflops: float = 787.0) -> dict[str, Any]:
    """Prompts computed together, one token each (prefill only): wall time from add to the first tokens (host
    synced), model FLOPs / time -> TFLOP/s against `peak_tflops` (the H100's measured bf16 GEMM ceiling)."""
    model, cfg = engine.runner.model, engine.runner.model.config
    body, head = linear_flops_per_token(model)
    flops = sum(body * len(r.prompt_ids) + head + attention_flops(cfg, len(r.prompt_ids)) for r in requests)
    one = [BenchRequest(r.prompt_ids, 1) for r in requests]
    run_requests(engine, one, stream=False)                         # warm-up
    times = []
    for _ in range(repeats):
        run = run_requests(engine, one, stream=False)
        times.append(run["elapsed"])
    t = sorted(times)[len(times) // 2]
    tflops = flops / t / 1e12
    return {"batch_size": len(requests), "input_len": len(requests[0].prompt_ids), "elapsed_s": t,
            "prefill_tokens_per_s": sum(len(r.prompt_ids) for r in requests) / t, "tflops": tflops,
            "pct_of_peak": 100 * tflops / peak_tflops, "model_tflop": flops / 1e12, "steps": run["steps"],
            "peak_memory_gib": _peak_gib(engine)}


def ttft(engine: LLMEngine, request: BenchRequest, repeats: int = 5) -> dict[str, Any]:
    """Time to first token of one prompt alone (median of `repeats`, after a warm-up)."""
    one = [BenchRequest(request.prompt_ids, 1)]
    run_requests(engine, one)
    times = []
    for _ in range(repeats):
        run = run_requests(engine, one)
        times.append(run["stamps"][0][0] - run["t0"])
    return {"input_len": len(request.prompt_ids), "ttft_ms": 1e3 * sorted(times)[len(times) // 2],
            "ttft_min_ms": 1e3 * min(times), "peak_memory_gib": _peak_gib(engine)}
