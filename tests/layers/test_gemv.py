"""Skinny-GEMM kernels (ember.layers.gemv) == F.linear: CPU under the Triton interpreter, and on the GPU in bf16 at
the Qwen3-8B decode shapes; the dispatch falls back to F.linear wherever the table has no entry."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch

CHECK = textwrap.dedent('''
    import sys, torch
    import torch.nn.functional as F
    from ember.layers.gemv import Config, skinny_linear

    device, dtypes, shapes = sys.argv[1], [getattr(torch, d) for d in sys.argv[2].split(",")], eval(sys.argv[3])
    configs = [Config(*c) for c in eval(sys.argv[4])]
    n_checked = 0
    for dt in dtypes:
        tol = 1e-5 if dt == torch.float32 else 8e-3
        for n, k in shapes:
            for m in (1, 2, 3, 8):
                for cfg in configs:
                    if cfg.kind == "dot" and dt == torch.float32:
                        continue                          # tensor-core path: 16-bit only
                    for bias in (False, True):
                        torch.manual_seed(n_checked)      # fresh inputs for every check
                        x = torch.randn(m, k, device=device, dtype=dt)
                        w = torch.randn(n, k, device=device, dtype=dt) * k ** -0.5
                        b = torch.randn(n, device=device, dtype=dt) if bias else None
                        out = torch.full((m, n), float("nan"), device=device, dtype=dt)   # poison: all written?
                        y = skinny_linear(x, w, b, cfg, out=out)
                        ref = F.linear(x.double(), w.double(), None if b is None else b.double())
                        err = ((y.double() - ref).norm() / ref.norm()).item()
                        assert torch.isfinite(y).all() and err < tol, (dt, n, k, m, cfg, bias, err)
                        if dt != torch.float32:           # and no worse than cuBLAS/ATen in the same dtype
                            base = ((F.linear(x, w, b).double() - ref).norm() / ref.norm()).item()
                            assert err < 2 * base + 1e-3, (dt, n, k, m, cfg, err, base)
                        n_checked += 1
    # strided rows (a view of a wider activation) and a 3-D input
    x = torch.randn(3, 2, 2 * shapes[0][1], device=device, dtype=dtypes[-1])[..., :shapes[0][1]]
    w = torch.randn(shapes[0][0], shapes[0][1], device=device, dtype=dtypes[-1])
    y = skinny_linear(x[:, 0], w, None, configs[0])
    assert torch.allclose(y.double(), F.linear(x[:, 0].double(), w.double()),
                          rtol=2e-2, atol=2e-2 * shapes[0][1] ** 0.5)
    # gated prologue ('ew' only): y = (act(gate) * up) @ W^T from h = [gate | up], as act-and-mul then linear
    from ember.layers.activation import GeluTanhAndMul, SiluAndMul
    from ember.layers.gemv import gated_linear
    for dt in dtypes:
        tol = 1e-5 if dt == torch.float32 else 8e-3
        for n, k in shapes:
            for m in (1, 3):
                for act in (SiluAndMul(), GeluTanhAndMul()):
                    for cfg in [c for c in configs if c.kind == "ew"]:
                        torch.manual_seed(n_checked)
                        h = torch.randn(m, 2 * k, device=device, dtype=dt)
                        w = torch.randn(n, k, device=device, dtype=dt) * k ** -0.5
                        b = torch.randn(n, device=device, dtype=dt)
                        y = gated_linear(h, w, b, act.kind, cfg)
                        ref = F.linear(act(h).double(), w.double(), b.double())   # torch act path on these tensors
                        err = ((y.double() - ref).norm() / ref.norm()).item()
                        assert torch.isfinite(y).all() and err < tol, ("gated", dt, n, k, m, cfg, act.kind, err)
                        n_checked += 1
    print("gemv ok", n_checked)
''')


def _run(device: str, dtypes: str, shapes: str, configs: str, env: dict) -> None:
    proc = subprocess.run([sys.executable, "-c", CHECK, device, dtypes, shapes, configs], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "gemv ok" in proc.stdout


def test_dispatch_falls_back_to_f_linear():
    from ember.layers import gemv

    x, w = torch.randn(1, 64), torch.randn(32, 64)
    assert gemv.lookup(x, w) is None                         # CPU: never the kernel
    assert torch.equal(gemv.linear(x, w), torch.nn.functional.linear(x, w))
    assert [gemv.m_bucket(m) for m in (1, 2, 3, 4, 5, 8)] == [1, 2, 4, 4, 8, 8]


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_gemv_interpreter_cpu():
    _run("cpu", "float32,float16", "[(40, 96), (64, 128), (33, 200)]",
         "[('ew', 16, 32, 4), ('ew', 8, 64, 4), ('dot', 16, 32, 4)]", {**os.environ, "TRITON_INTERPRET": "1"})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")
def test_gemv_gpu_decode_shapes():
    _run("cuda", "bfloat16,float16", "[(4096, 4096), (4096, 12288), (1000, 200)]",
         "[('ew', 4, 256, 4), ('ew', 2, 512, 4), ('dot', 32, 256, 4, 3)]", dict(os.environ))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")
def test_gemv_dispatch_gpu():
    from ember.layers import gemv

    x = torch.randn(2, 512, device="cuda", dtype=torch.bfloat16)
    w = torch.randn(256, 512, device="cuda", dtype=torch.bfloat16)
    saved = dict(gemv.TABLE)
    try:
        gemv.TABLE[(256, 512, 2)] = gemv.Config("ew", 8, 256, 4)
        assert gemv.lookup(x, w) == gemv.TABLE[(256, 512, 2)]
        assert gemv.lookup(x.float(), w.float()) is None     # fp32: F.linear
        assert gemv.lookup(torch.randn(9, 512, device="cuda", dtype=torch.bfloat16), w) is None   # M > 8
        torch.testing.assert_close(gemv.linear(x, w), torch.nn.functional.linear(x, w), rtol=2e-2, atol=2e-2)
    finally:
        gemv.TABLE.clear()
        gemv.TABLE.update(saved)


TINY = textwrap.dedent('''
    import torch
    import torch.nn.functional as F
    from transformers import AutoConfig
    import ember.layers.fused as fused
    from ember.layers import fused_kernels, gemv
    from ember.layers import linear as lin
    from ember.bench.model import build_random_model, make_engine
    from ember.config import EngineConfig, KvCacheConfig
    from ember.models.qwen3 import Qwen3ForCausalLM
    from ember.bench.datasets import BenchRequest
    from ember.bench.engine_bench import run_requests

    fused.fused_kernels = lambda x: fused_kernels        # interpreter: the Triton layer kernels on CPU tensors
    def forced(self, x):                                 # every linear with <= 8 rows through the skinny kernel
        rows = x.numel() // x.shape[-1]
        if gemv.ENABLED and rows <= 8:
            return gemv.skinny_linear(x, self.weight, self.bias, gemv.Config("ew", 8, 32, 4))
        return F.linear(x, self.weight, self.bias)
    lin.Linear.forward = forced
    def forced_gated(self, h, act):                      # and the down_proj through the gated prologue
        if gemv.ENABLED and h.numel() // h.shape[-1] <= 8:
            return gemv.gated_linear(h, self.weight, self.bias, act.kind, gemv.Config("ew", 8, 32, 4))
        return self(act(h))
    lin.Linear.forward_gated = forced_gated
    cfg = AutoConfig.for_model(**{**Qwen3ForCausalLM.tiny_config, "architectures": ["Qwen3ForCausalLM"]})
    model = build_random_model(cfg, torch.float32, torch.device("cpu"), seed=1)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.mul_(15.0)                             # peaky logits: no near-ties (as the GPU graph test)
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(3, 300, (n,), generator=g).tolist() for n in (3, 17, 6)]
    def tokens(on):
        gemv.ENABLED, fused.QK_ROPE = on, on
        eng = make_engine(model, EngineConfig(max_num_seqs=4, kv_cache=KvCacheConfig(num_blocks=32),
                                              attention_backend="torch"), torch.device("cpu"), torch.float32, 128)
        return run_requests(eng, [BenchRequest(p, 12) for p in prompts], stream=False)["tokens"]   # greedy
    base, new = tokens(False), tokens(True)
    assert base == new, (base, new)
    assert len(set(map(tuple, base))) > 1
    print("tiny tokens ok", base[0])
''')


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_tiny_qwen3_greedy_tokens_same_with_kernels_interpreter_cpu():
    """fp32 tiny Qwen3, greedy: skinny GEMM on every decode linear, the act-and-mul folded into down_proj's kernel,
    and the fused q/k-norm-rope == the plain path."""
    proc = subprocess.run([sys.executable, "-c", TINY], env={**os.environ, "TRITON_INTERPRET": "1"},
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "tiny tokens ok" in proc.stdout
