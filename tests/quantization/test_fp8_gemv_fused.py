"""The FP8 half2 decode GEMV's fused epilogue: act(gate) * up of a [gate | up] layer in the GEMV's launch == the
unfused GEMV followed by act-and-mul's rounding (CPU under the Triton interpreter's fp32 twin; the GPU runs the PTX)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import textwrap

import pytest
import torch

needs_triton = pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")

CHECK = textwrap.dedent('''
    import sys, torch
    import torch.nn.functional as F
    from ember.layers.activation import get_act_and_mul
    from ember.quantization.formats import get_format
    from ember.quantization.kernels import dispatch
    from ember.quantization.kernels.dispatch import Config
    from ember.quantization.linear import QuantLinear
    from ember.quantization.random_quant import fill_random_

    device, dtype = sys.argv[1], getattr(torch, sys.argv[2])
    i_size, k = 36, 256                                    # I = 36: the last program's gate / up rows are a tail
    checked = 0
    for kind, algo in (("fp8", "FP8"), ("fp8_rowwise", "FP8_PER_CHANNEL_PER_TOKEN")):
        for bias in (False, True):
            torch.manual_seed(checked)
            layer = QuantLinear(get_format(algo), k, [i_size, i_size], bias, dtype, device)
            fill_random_(layer, torch.randn(2 * i_size, k, device=device) * 0.05, act_amax=4.0)
            if bias:
                layer.bias.data.normal_()
            for m in (1, 3):
                x = torch.randn(m, k, device=device) * 2
                if device == "cpu":         # why: the interpreter's e4m3 cast mis-rounds values just below a power
                    s = 2.0 ** -6           # of two: exact inputs (as test_quant_kernels.py)
                    x = (x / s).clamp(-448, 448).to(torch.float8_e4m3fn).float() * s
                    x[:, 0] = 448 * s
                    if kind == "fp8":
                        layer.input_scale.data.fill_(s)
                x = x.to(dtype)
                for cfg in (Config("h2", 4, 8, 64, 1, 1, 1), Config("h2", 4, 16, 128, 2, 2, 1)):
                    y = dispatch.run(kind, layer, x, cfg).float()             # [M, 2I], rounded to dtype
                    for act_name, gelu in (("silu", False), ("gelu_pytorch_tanh", True)):
                        act = get_act_and_mul(act_name)
                        g, u = y.chunk(2, dim=-1)
                        a = F.gelu(g, approximate="tanh") if gelu else g / (1.0 + torch.exp(-g))
                        ref = (a.to(dtype).float() * u).to(dtype)                # act-and-mul's rounding
                        fused = dispatch.run(kind, layer, x, cfg, gated=act.kind)
                        assert fused.shape == (m, i_size) and fused.dtype == dtype, fused.shape
                        # the GEMV sums are the same; the exp may differ in its last fp32 bit
                        torch.testing.assert_close(fused, ref, rtol=2e-3, atol=1e-4)
                        checked += 1
            # the module path: CPU never fuses (None from the dispatch), the GPU fuses where the table says h2
            act = get_act_and_mul("silu")
            x = torch.randn(1, k, device=device, dtype=dtype)
            torch.testing.assert_close(layer.forward_act(x, act), act(layer(x)), rtol=2e-3, atol=1e-4)
            assert (dispatch.quant_linear(layer, x, gated="silu") is None) == (device == "cpu")
    try:
        dispatch.run("fp8", layer, x, Config("h2", 4, 8, 64, 1, 1, 2), gated="silu")
        raise AssertionError("split-K with the gated epilogue must be refused")
    except ValueError as e:
        assert "split_k 1" in str(e), e
    print("fused fp8 gemv ok", checked)
''')


def _run(device: str, dtype: str, env: dict) -> None:
    proc = subprocess.run([sys.executable, "-c", CHECK, device, dtype], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0 and "fused fp8 gemv ok" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]


@needs_triton
def test_gated_epilogue_interpreter_cpu():
    _run("cpu", "float16", {**os.environ, "TRITON_INTERPRET": "1"})


@pytest.mark.gpu
@needs_cuda
def test_gated_epilogue_gpu():
    _run("cuda", "bfloat16", dict(os.environ))
