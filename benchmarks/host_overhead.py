"""Host cost of one engine step, no GPU: a stub model (forward returns zeros, logits a small fixed tensor) behind
the real scheduler, runner input preparation, sampler and postprocessing, at decode batch 256-512.

    python benchmarks/host_overhead.py                      # this tree
    PYTHONPATH=/tmp/shim_old python benchmarks/host_overhead.py --label old   # another tree (make_shim.py)

The decode CUDA-graph path is exercised on the CPU: its graphs are replaced by no-ops, so a step's time is the
host work a GPU step pays between replays (GPU work is ~0 here: vocab 128, hidden 64). Prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import time
import types

import torch
from transformers import LlamaConfig

import ember.engine.cuda_graph as cg
from ember.bench.model import NullTokenizer
from ember.config import EngineConfig, KvCacheConfig
from ember.engine.llm_engine import LLMEngine
from ember.sampling_params import SamplingParams


class _NoopGraph:
    def replay(self) -> None:
        pass


class _TorchNoPin(types.ModuleType):
    """`torch` for a tree whose graph runner pins host memory unconditionally (no CUDA here)."""

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def tensor(*a, pin_memory=False, **k):
        return torch.tensor(*a, **k)


def build(batch: int, graphs: bool, max_len: int) -> LLMEngine:
    from ember.loader.build import build_model

    cfg = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=max_len,
                      architectures=["LlamaForCausalLM"])
    model = build_model(cfg, torch.float32, "cpu")
    logits = torch.randn(batch * 2, cfg.vocab_size)
    model.forward = lambda ids, pos, meta: torch.zeros(ids.shape[0], cfg.hidden_size)
    model.compute_logits = lambda h: logits[:h.shape[0]]
    blocks = batch * -(-max_len // 16) + 64
    eng = LLMEngine(model, NullTokenizer(), EngineConfig(max_num_seqs=batch, max_num_tokens=8192,
                    max_model_len=max_len, kv_cache=KvCacheConfig(num_blocks=blocks, enable_prefix_caching=False)),
                    torch.device("cpu"), torch.float32, max_len, eos_token_ids=[])
    if graphs:
        cg.torch = _TorchNoPin("torch")   # harmless for a tree that pins only on CUDA
        g = cg.DecodeGraphs(model, eng.runner.backend, eng.runner.kv_caches, 16, batch, max_len, cfg.vocab_size,
                            torch.device("cpu"))
        g.graphs = {b: _NoopGraph() for b in g.buckets}
        eng.runner.graphs = g
    return eng


def params(n: int, detok: bool) -> SamplingParams:
    kw = {} if detok or "detokenize" not in SamplingParams.__dataclass_fields__ else {"detokenize": False}
    return SamplingParams(temperature=0.0, max_tokens=n, ignore_eos=True, **kw)


def measure(batch: int, graphs: bool, in_len: int, out_len: int, stream: bool) -> dict:
    """Median host time of the all-decode steps (after every prompt is prefilled) of `batch` requests."""
    eng = build(batch, graphs, in_len + out_len)
    kw = {} if stream or "stream" not in LLMEngine.add_request.__code__.co_varnames else {"stream": False}
    for i in range(batch):
        eng.add_request([(7 * i + j) % 100 + 1 for j in range(in_len)], params(out_len, False), **kw)
    times = []
    while eng.has_unfinished():
        t0 = time.perf_counter()
        eng.step()
        dt = time.perf_counter() - t0
        if all(s.num_computed_tokens >= s.num_prompt_tokens for s in eng.scheduler.running) and len(
                eng.scheduler.running) == batch:
            times.append(dt)
    return {"steps": len(times), "ms": 1e3 * statistics.median(times)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--label", default="this tree")
    ap.add_argument("--batches", type=int, nargs="+", default=[256, 512])
    args = ap.parse_args()
    rows = []
    for batch in args.batches:
        for graphs in (True, False):
            for stream in (True, False):
                r = measure(batch, graphs, 128, 128, stream)
                rows.append((args.label, batch, "graph (no-op replay)" if graphs else "eager (stub model)",
                             "per-step outputs" if stream else "final only", r["ms"], r["steps"]))
    print("| tree | batch | decode path | outputs | host ms / step (median) | steps |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]} | {r[4]:.2f} | {r[5]} |")


if __name__ == "__main__":
    main()
