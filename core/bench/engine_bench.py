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
    return SamplingParams(temperature=0.0, max_tokens=output_len, ignore_eos=True)


def _sync(engine: LLMEngine) -> None:
    if engine.device.type == "cuda":
        torch.cuda.synchronize(engine.device)


def run_requests(engine: LLMEngine, requests: list[BenchRequest]) -> dict[str, Any]:
    """Add all requests, step until done; per request: add time, time of each new token (host clock after the
    step that produced it: each step ends with the sampled ids on the host)."""
    _sync(engine)
    t0 = time.perf_counter()
    ids = [engine.add_request(r.prompt_ids, _params(r.output_len)) for r in requests]
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
    return res


def throughput(engine: LLMEngine, requests: list[BenchRequest], warmup: int = 1) -> dict[str, Any]:
    """All requests queued at once (offline): output tokens/s, requests/s, total tokens/s."""
    if warmup:
        run_requests(engine, requests[:min(len(requests), 8)])
    if engine.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(engine.device)
    run = run_requests(engine, requests)
    out_tokens = sum(len(t) for t in run["tokens"])
    in_tokens = sum(len(r.prompt_ids) for r in requests)
    res = {"num_requests": len(requests), "elapsed_s": run["elapsed"], "steps": run["steps"],
           "output_tokens": out_tokens, "output_tokens_per_s": out_tokens / run["elapsed"],
           "requests_per_s": len(requests) / run["elapsed"],
           "total_tokens_per_s": (out_tokens + in_tokens) / run["elapsed"]}
    if engine.device.type == "cuda":
        res["peak_memory_gib"] = torch.cuda.max_memory_allocated(engine.device) / 2**30
    return res
