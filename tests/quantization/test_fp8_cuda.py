"""FP8 QuantLinear on CUDA goes through torch._scaled_mm and matches the dequantize-then-matmul reference."""

from __future__ import annotations

import pytest
import torch

from ember.quantization.formats import get_format
from ember.quantization.linear import QuantLinear
from ember.quantization.numerics import fp8

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")


def _layer(device, dtype, n=(256, 128, 128), k=512):
    torch.manual_seed(0)
    w = torch.randn(sum(n), k) * 0.05
    layer = QuantLinear(get_format("FP8"), k, list(n), False, dtype, device, {"q": 0, "k": 1, "v": 2})
    q, s = fp8.quantize_per_tensor(w)
    layer.weight.data.copy_(q)
    layer.weight_scale.data.fill_(float(s))
    layer.input_scale.data.fill_(3.0 / 448)
    layer.finalize_()
    return layer


@pytest.mark.gpu
@needs_cuda
@pytest.mark.parametrize("tokens", [1, 7, 64])
def test_scaled_mm_matches_fallback(tokens):
    layer = _layer("cuda", torch.bfloat16)
    x = torch.randn(tokens, 512, device="cuda", dtype=torch.bfloat16)
    got = layer(x)  # torch._scaled_mm
    t = layer.tensors()
    ref = torch.nn.functional.linear(layer.format.act(x.float(), t), layer.format.weight(t, layer.output_sizes))
    assert got.dtype == torch.bfloat16 and got.shape == (tokens, 512)
    assert float((got.float() - ref).abs().max() / ref.abs().max()) < 1e-2


def test_cpu_fallback_matches_reference():
    layer = _layer("cpu", torch.float32)
    x = torch.randn(5, 512)
    t = layer.tensors()
    xq = (x / (3.0 / 448)).clamp(-448, 448).to(torch.float8_e4m3fn).float() * (3.0 / 448)
    ref = xq @ fp8.dequantize(t["weight"], t["weight_scale"][0]).T
    torch.testing.assert_close(layer(x), ref)
