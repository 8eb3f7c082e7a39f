"""Fused Triton layer kernels == the PyTorch layer code they replace (CPU: Triton interpreter in a subprocess)."""

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
    from transformers import AutoConfig
    from ember.layers import fused_kernels as fk
    from ember.layers.norm import RMSNorm
    from ember.layers.rotary import RotaryEmbedding
    from ember.layers.activation import SiluAndMul, GeluTanhAndMul

    device, dtypes = sys.argv[1], [getattr(torch, d) for d in sys.argv[2].split(",")]
    torch.manual_seed(0)

    def close(a, b, what, tol):
        err = ((a.double() - b.double()).norm() / b.double().norm()).item()
        assert torch.isfinite(a).all() and err < tol, (what, err)

    for dt in dtypes:
        tol = 1e-5 if dt == torch.float32 else 1e-2
        for gemma in (False, True):
            norm = RMSNorm(48, 1e-6, gemma=gemma).to(device, dt)
            with torch.no_grad():
                norm.weight.normal_()
            qkv = torch.randn(5, 3, 2, 48, device=device, dtype=dt)
            x = qkv[:, 0]                                       # strided [T, H, D] view, as q of a fused qkv
            r = torch.randn(5, 2, 48, device=device, dtype=dt)
            close(fk.rmsnorm(x, norm.weight, norm.eps, gemma=gemma), norm._norm(x), "rmsnorm", tol)
            y, s = fk.rmsnorm(x, norm.weight, norm.eps, residual=r, gemma=gemma)
            close(s, x + r, "residual", tol)
            close(y, norm._norm(x + r), "add+rmsnorm", tol)
        for rot_factor in (1.0, 0.5):
            cfg = AutoConfig.for_model("llama", hidden_size=64, num_attention_heads=2, num_key_value_heads=1,
                                       max_position_embeddings=64, rope_parameters={"rope_type": "default",
                                       "rope_theta": 10000.0, "partial_rotary_factor": rot_factor})
            rope = RotaryEmbedding(cfg, 32).to(device)
            rope.init_buffers()
            qkv = torch.randn(6, 4 * 32, device=device, dtype=dt)
            q, k = qkv[:, :64], qkv[:, 64:96]
            pos = torch.tensor([0, 3, 7, 63, 1, 2], device=device)
            want = rope._rotate(q, rope.cos_cache[pos].to(dt)[:, None], rope.sin_cache[pos].to(dt)[:, None])
            got_q, got_k = fk.rotary(pos, q, k, rope.cos_cache, rope.sin_cache, 32)
            close(got_q, want, "rope q", tol)
            close(got_k, rope._rotate(k, rope.cos_cache[pos].to(dt)[:, None], rope.sin_cache[pos].to(dt)[:, None]),
                  "rope k", tol)
            for gemma in (False, True):                         # q/k norm + rope in one kernel == the two
                qn, kn = RMSNorm(32, 1e-6, gemma=gemma).to(device, dt), RMSNorm(32, 1e-6, gemma=gemma).to(device, dt)
                with torch.no_grad():
                    qn.weight.normal_()
                    kn.weight.normal_()
                nq = fk.rmsnorm(q.view(6, 2, 32), qn.weight, qn.eps, gemma=gemma).view(6, -1)
                nk = fk.rmsnorm(k.view(6, 1, 32), kn.weight, kn.eps, gemma=gemma).view(6, -1)
                want_q, want_k = fk.rotary(pos, nq, nk, rope.cos_cache, rope.sin_cache, 32)
                ref_q = rope._rotate(qn._norm(q.view(6, 2, 32)).view(6, -1), rope.cos_cache[pos].to(dt)[:, None],
                                     rope.sin_cache[pos].to(dt)[:, None])
                out_q, out_k = fk.qk_norm_rotary(pos, q, k, qn.weight, kn.weight, qn.eps, gemma, rope.cos_cache,
                                                 rope.sin_cache, 32)
                close(out_q, want_q, "qk_norm_rope q vs kernels", tol)
                close(out_k, want_k, "qk_norm_rope k vs kernels", tol)
                close(out_q, ref_q, "qk_norm_rope q vs torch", tol)
        x = torch.randn(4, 2 * 1500, device=device, dtype=dt)
        gate, up = x.chunk(2, -1)
        close(fk.act_and_mul(x), torch.nn.functional.silu(gate) * up, "silu", tol)
        close(fk.act_and_mul(x, gelu=True), torch.nn.functional.gelu(gate, approximate="tanh") * up, "gelu", tol)
    print("fused kernels ok")
''')


def _run(device: str, dtypes: str, env: dict) -> None:
    proc = subprocess.run([sys.executable, "-c", CHECK, device, dtypes], env=env, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    assert "fused kernels ok" in proc.stdout


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_fused_kernels_interpreter_cpu():
    _run("cpu", "float32,float16", {**os.environ, "TRITON_INTERPRET": "1"})


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")
def test_fused_kernels_gpu():
    _run("cuda", "float32,bfloat16,float16", dict(os.environ))
