"""Fused MoE (ember.layers.moe_kernels) == the reference expert loop: CPU under the Triton interpreter at tiny shapes,
and on the GPU in bf16 at the Qwen3-30B-A3B / Mixtral-8x7B layer shapes, eager and replayed from a CUDA graph."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch

CHECK = textwrap.dedent('''
    import torch
    from ember.layers import moe_kernels as mk
    from ember.layers.moe import FusedExperts

    def routing(t, e, k, case, gen):
        if case == "skewed":                             # every token on expert 1 (a group spans blocks) + one other
            other = torch.randint(2, e, (t, 1), generator=gen)
            return torch.cat([torch.ones(t, 1, dtype=torch.long), other], 1)[:, :k]
        used = e - 2                                     # the last two experts receive no tokens
        return torch.stack([torch.randperm(used, generator=gen)[:k] for _ in range(t)])

    # (E, H, I, T, routing, gelu, Config(block_m, block_n, block_k, group_m, warps, stages))
    cases = [
        (4, 32, 16, 1, "random", False, mk.Config(16, 32, 16, 1, 4, 1)),
        (8, 64, 48, 3, "random", False, mk.Config(16, 64, 32, 2, 4, 1)),    # down GEMM: K = 48, uneven
        (8, 64, 48, 17, "random", False, mk.Config(16, 32, 32, 4, 4, 1)),
        (6, 32, 24, 17, "skewed", False, mk.Config(16, 32, 16, 1, 4, 1)),   # I = 24: column clamp in both GEMMs
        (8, 48, 32, 17, "random", True, mk.Config(32, 64, 16, 1, 4, 1)),    # GeLU-tanh, H = 48: uneven N
        (5, 32, 16, 3, "skewed", False, mk.Config(32, 32, 32, 1, 4, 1)),
    ]
    gen = torch.Generator().manual_seed(0)
    for e, h, i, t, case, gelu, cfg in cases:
        k = 2
        m = FusedExperts(e, h, i, "gelu_pytorch_tanh" if gelu else "silu")
        with torch.no_grad():
            m.gate_up_proj.copy_(torch.randn(e, 2 * i, h, generator=gen) * h ** -0.5)
            m.down_proj.copy_(torch.randn(e, h, i, generator=gen) * i ** -0.5)
        x = torch.randn(t, h, generator=gen)
        ids = routing(t, e, k, case, gen)
        w = torch.rand(t, k, generator=gen)
        ref = m.reference(x, ids, w)
        for small in (None, 0):                          # the one-program Triton sort, then the torch-op align
            mk.SMALL_ALIGN = 1024 if small is None else 0
            y = mk.fused_experts(x, m.gate_up_proj.detach(), m.down_proj.detach(), ids, w, gelu, cfg)
            err = (y - ref).abs().max().item()
            assert y.shape == ref.shape and err < 1e-5, (e, h, i, t, case, gelu, cfg, small, err)
        mk.SMALL_ALIGN = 1024
        a, b = mk.align(ids, e, cfg.block_m), mk.align(ids, e, cfg.block_m, small=0)
        n = int(a[2])
        assert n == int(b[2]) and n % cfg.block_m == 0
        assert torch.equal(a[0][:n], b[0][:n]) and torch.equal(a[1][:n // cfg.block_m], b[1][:n // cfg.block_m])
        real = a[0][:n][a[0][:n] < t * k].long()         # every assignment exactly once, in its expert's block
        assert torch.equal(real.sort().values, torch.arange(t * k))
        block_of = torch.arange(n)[a[0][:n] < t * k] // cfg.block_m
        assert torch.equal(a[1][block_of].long(), ids.reshape(-1)[real])

    for e, k, renorm in ((6, 2, True), (8, 2, False), (128, 8, True)):
        logits = torch.randn(5, e, generator=gen)
        w, ids = mk.topk_softmax(logits, k, renorm, torch.float32)
        ref_w, ref_ids = torch.topk(torch.softmax(logits, -1, dtype=torch.float), k, dim=-1)
        if renorm:
            ref_w = ref_w / ref_w.sum(-1, keepdim=True)
        assert torch.equal(ids.long(), ref_ids) and torch.allclose(w, ref_w, atol=1e-6), (e, k, renorm)
    print("moe ok", len(cases))
''')


def test_cpu_runs_reference_loop():
    from ember.layers import moe

    assert moe.fused_moe_kernels(torch.randn(2, 8)) is None
    assert moe.fused_moe_kernels(torch.randn(2, 8, dtype=torch.bfloat16)) is None


def test_only_the_fused_path_is_graph_safe(monkeypatch):
    """The engine keeps CUDA graphs off for models whose MoE would run the host-syncing loop (fp32, or
    EMBER_FUSED_MOE=0): graph_safe says which."""
    from ember.layers import moe

    experts = moe.FusedExperts(4, 8, 16, "silu").to(torch.bfloat16)
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert experts.graph_safe(cuda, torch.bfloat16)
    assert not experts.graph_safe(cuda, torch.float32) and not experts.graph_safe(cpu, torch.bfloat16)
    monkeypatch.setattr(moe, "FUSED", False)
    assert not experts.graph_safe(cuda, torch.bfloat16)


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_fused_moe_interpreter_cpu():
    proc = subprocess.run([sys.executable, "-c", CHECK], env={**os.environ, "TRITON_INTERPRET": "1"},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "moe ok" in proc.stdout


def _block(e: int, h: int, i: int, k: int, seed: int = 0):
    from ember.layers.moe import SparseMoeBlock

    torch.manual_seed(seed)
    block = SparseMoeBlock(h, i, e, k, norm_topk_prob=True).to("cuda", torch.bfloat16)
    with torch.no_grad():
        block.gate.weight.normal_(0, h ** -0.5)
        block.experts.gate_up_proj.normal_(0, h ** -0.5)
        block.experts.down_proj.normal_(0, i ** -0.5)
    return block


needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("shape", [(128, 2048, 768, 8), (8, 4096, 14336, 2)], ids=["qwen3-30b-a3b", "mixtral-8x7b"])
@pytest.mark.parametrize("t", [1, 8, 64, 300])
def test_fused_moe_gpu_real_shapes(shape, t):
    """bf16 fused path no further from an fp64 loop than the bf16 loop is (router from torch: same experts)."""
    from ember.layers import moe_kernels

    exp = _block(*shape).experts
    x = torch.randn(t, shape[1], device="cuda", dtype=torch.bfloat16)
    ids = torch.stack([torch.randperm(shape[0], device="cuda")[:shape[3]] for _ in range(t)])
    w = torch.softmax(torch.randn(t, shape[3], device="cuda"), -1).to(torch.bfloat16)
    with torch.no_grad():
        fused = moe_kernels.fused_experts(x, exp.gate_up_proj, exp.down_proj, ids, w)
        loop = exp.reference(x, ids, w)
        exact = exp.double().reference(x.double(), ids, w.double())
    err = ((fused.double() - exact).norm() / exact.norm()).item()
    base = ((loop.double() - exact).norm() / exact.norm()).item()
    assert torch.isfinite(fused).all() and err < 2 * base + 1e-3, (err, base)


@pytest.mark.gpu
@needs_gpu
def test_fused_moe_gpu_router_and_graph_capture():
    """The whole block (fused router + experts) captured in a CUDA graph, replayed on new inputs == eager, and
    == the reference loop given the same routing (bf16 ties make torch.topk's choice differ at times)."""
    from ember.layers import moe_kernels

    block = _block(128, 512, 256, 8)
    with torch.no_grad():
        for t in (1, 16, 200):                               # 200 x 8 assignments: the torch-op align, captured
            static = torch.randn(t, 512, device="cuda", dtype=torch.bfloat16)
            block(static)                                    # warm-up: compiles the kernels
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                out = block(static)
            for seed in (1, 2):
                torch.manual_seed(seed)
                static.copy_(torch.randn_like(static))
                graph.replay()
                torch.testing.assert_close(out, block(static))
                logits = block.gate(static)
                w, ids = moe_kernels.topk_softmax(logits, 8, True, static.dtype)
                ref_w, ref_ids = torch.topk(torch.softmax(logits, -1, dtype=torch.float), 8, dim=-1)
                torch.testing.assert_close(w, (ref_w / ref_w.sum(-1, keepdim=True)).to(w.dtype))
                loop = block.experts.reference(static, ids, w)
                torch.testing.assert_close(out, loop, rtol=2e-2, atol=2e-2)


TINY = textwrap.dedent('''
    import sys
    import torch
    from transformers import AutoConfig
    from ember.bench.model import build_random_model, make_engine
    from ember.config import EngineConfig, KvCacheConfig
    from ember.layers import moe, moe_kernels
    from ember.plugins import get_registry
    from ember.bench.datasets import BenchRequest
    from ember.bench.engine_bench import run_requests

    moe.fused_moe_kernels = lambda x: moe_kernels if moe.FUSED else None   # interpreter: fused path on CPU fp32
    calls = []
    fused_experts = moe_kernels.fused_experts
    moe_kernels.fused_experts = lambda *a, **k: calls.append(1) or fused_experts(*a, **k)
    cls = get_registry().load("model", sys.argv[1])
    cfg = AutoConfig.for_model(**{**cls.tiny_config, "architectures": [sys.argv[1]]})
    model = build_random_model(cfg, torch.float32, torch.device("cpu"), seed=1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(15.0)                             # peaky logits and router: no near-ties
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 300, (n,), generator=g).tolist() for n in (3, 11)]
    def tokens(fused):
        moe.FUSED = fused
        eng = make_engine(model, EngineConfig(max_num_seqs=4, kv_cache=KvCacheConfig(num_blocks=16),
                                              attention_backend="torch"), torch.device("cpu"), torch.float32, 64)
        return run_requests(eng, [BenchRequest(p, 5) for p in prompts], stream=False)["tokens"]   # greedy
    base, new = tokens(False), tokens(True)
    assert base == new, (base, new)
    assert calls and len(set(map(tuple, base))) > 1, (len(calls), base)
    print("tiny tokens ok", base)
''')


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
@pytest.mark.parametrize("arch", ["Qwen3MoeForCausalLM", "MixtralForCausalLM"])
def test_tiny_moe_greedy_tokens_same_fused_interpreter_cpu(arch):
    """fp32 tiny MoE model, greedy, through the engine: fused router + experts == the reference loop."""
    proc = subprocess.run([sys.executable, "-c", TINY, arch], env={**os.environ, "TRITON_INTERPRET": "1"},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "tiny tokens ok" in proc.stdout
