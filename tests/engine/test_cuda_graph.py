"""Decode CUDA graphs: bucket choice on the CPU; on a GPU, greedy tokens with graphs == eager triton == torch."""

from __future__ import annotations

import pytest
import torch

from ember.config import EngineConfig, KvCacheConfig
from ember.engine.cuda_graph import graph_buckets
from ember.sampling_params import SamplingParams

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")


def test_graph_buckets():
    assert graph_buckets(1) == [1]
    assert graph_buckets(6) == [1, 2, 4, 6]
    assert graph_buckets(64) == [1, 2, 4, 8, 16, 32, 48, 64]
    assert graph_buckets(40) == [1, 2, 4, 8, 16, 32, 40]


def test_config_validates_graph_batch():
    with pytest.raises(ValueError, match="cuda_graph_max_batch"):
        EngineConfig(cuda_graph_max_batch=0)


def test_cpu_never_captures(tiny_dir):
    from ember.engine.llm_engine import LLMEngine
    from ember.loader.build import load_model

    model = load_model(tiny_dir, torch.float32, "cpu")
    cfg = EngineConfig(max_num_seqs=4, kv_cache=KvCacheConfig(num_blocks=16), attention_backend="torch")
    engine = LLMEngine(model, None, cfg, torch.device("cpu"), torch.float32, 256, [])
    assert engine.runner.graphs is None and not engine.runner.use_cuda_graphs


def _greedy_tokens(model, backend: str, graphs: bool, prompts, lens, async_scheduling: bool = False
                   ) -> tuple[list[list[int]], int]:
    from ember.bench.model import make_engine

    cfg = EngineConfig(max_num_seqs=8, max_num_tokens=256, kv_cache=KvCacheConfig(num_blocks=64),
                       attention_backend=backend, cuda_graphs=graphs, async_scheduling=async_scheduling)
    engine = make_engine(model, cfg, torch.device("cuda"), torch.float32, 256)
    replays = [0]
    if engine.runner.graphs is not None:
        run = engine.runner.graphs.run

        def counted(*a, **k):
            replays[0] += 1
            torch.cuda.set_sync_debug_mode("error")   # the decode step itself must never sync with the GPU
            try:
                return run(*a, **k)
            finally:
                torch.cuda.set_sync_debug_mode("default")

        engine.runner.graphs.run = counted
    ids = [engine.add_request(p, SamplingParams(temperature=0, max_tokens=n, ignore_eos=True))
           for p, n in zip(prompts, lens)]
    done = {}
    while engine.has_unfinished():
        for out in engine.step():
            if out.finished:
                done[out.request_id] = out.outputs[0].token_ids
    return [done[i] for i in ids], replays[0]


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("arch", ["llama", "qwen3"])
def test_gpu_graph_tokens_match_eager_and_torch(tiny_dir, arch):
    """5 prompts of different lengths finishing at different steps: the batch walks buckets 8 -> 4 -> 2 -> 1
    with padded rows; tokens must equal eager triton and the torch reference exactly (fp32, peaky logits)."""
    from transformers import AutoConfig

    from ember.bench.model import build_random_model
    from ember.loader.build import load_model
    from ember.models.qwen3 import Qwen3ForCausalLM

    if arch == "llama":
        model = load_model(tiny_dir, torch.float32, "cuda")
    else:
        cfg = AutoConfig.for_model(**{**Qwen3ForCausalLM.tiny_config, "architectures": ["Qwen3ForCausalLM"]})
        model = build_random_model(cfg, torch.float32, torch.device("cuda"), seed=1)
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() >= 2:
                    p.mul_(15.0)    # std 0.3: peaky random logits, no near-ties between kernels
    vocab = model.config.vocab_size
    g = torch.Generator().manual_seed(0)
    plens, lens = [3, 17, 40, 1, 70], [20, 9, 33, 5, 14]
    prompts = [torch.randint(3, vocab, (n,), generator=g).tolist() for n in plens]
    ref, _ = _greedy_tokens(model, "torch", False, prompts, lens)
    eager, _ = _greedy_tokens(model, "triton", False, prompts, lens)
    graphed, replays = _greedy_tokens(model, "triton", True, prompts, lens)
    overlapped, async_replays = _greedy_tokens(model, "triton", True, prompts, lens, async_scheduling=True)
    assert [len(t) for t in graphed] == lens
    assert replays >= max(lens) - 2          # every decode step after the prefill went through a graph
    assert async_replays >= max(lens) - 2    # async: input ids read from the previous step on the device
    assert eager == ref
    assert graphed == ref
    assert overlapped == ref
