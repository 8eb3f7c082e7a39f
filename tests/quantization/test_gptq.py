"""GPTQ: on one linear with correlated inputs its output error beats round-to-nearest int4 (same groups, same
stored format); the stored tensors are int4-awq's layout. End-to-end export / reload / generate runs in
test_recipes.py (every registered recipe)."""

from __future__ import annotations

import pytest
import torch

from ember.quantization.numerics import int4
from ember.quantization.recipe import LayerStats, get_recipe
from ember.quantization.recipes.gptq import gptq_quantize, hessian


def correlated(rows: int, k: int, seed: int) -> torch.Tensor:
    """Inputs with strongly correlated channels and uneven scales, as LLM activations have."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(k, k, generator=g) / k ** 0.5 + torch.eye(k)
    scales = torch.rand(k, generator=g) * 3 + 0.1
    latent = torch.randn(rows, 16, generator=g) @ torch.randn(16, k, generator=g)  # low-rank shared component
    return (torch.randn(rows, k, generator=g) @ mix + 2 * latent) * scales


def output_error(x, w, w_hat):
    return float((x @ w.T - x @ w_hat.T).norm())


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_beats_round_to_nearest(act_order):
    torch.manual_seed(0)
    n, k, group = 64, 256, 128
    w = torch.randn(n, k) * 0.05
    x = correlated(4096, k, seed=1)
    x_cal, x_test = x[:2048], x[2048:]  # held-out rows of the same distribution
    q, scale = gptq_quantize(w, hessian(x_cal), group_size=group, act_order=act_order)
    assert q.dtype == torch.int8 and int(q.min()) >= -8 and int(q.max()) <= 7
    assert scale.shape == (n, k // group)
    w_gptq = int4.dequantize(int4.pack(q), scale)
    w_rtn = int4.dequantize(*int4.quantize(w, group))
    e_gptq, e_rtn = output_error(x_test, w, w_gptq), output_error(x_test, w, w_rtn)
    assert e_gptq < 0.8 * e_rtn, (e_gptq, e_rtn)


def test_gptq_identity_hessian_is_round_to_nearest():
    """With H = I no error is propagated: GPTQ must reduce to round-to-nearest with int4-awq's scales."""
    torch.manual_seed(0)
    w = torch.randn(32, 256)
    q, scale = gptq_quantize(w, torch.eye(256), group_size=128, percdamp=0.0)
    packed, rtn_scale = int4.quantize(w, 128)
    assert torch.equal(int4.pack(q), packed) and torch.allclose(scale, rtn_scale)


def test_gptq_recipe_layout_and_dead_columns():
    torch.manual_seed(0)
    n, k = 48, 256
    w = torch.randn(n, k) * 0.05
    x = correlated(512, k, seed=2)
    x[:, 5] = 0.0  # a dead input channel
    stats = LayerStats(amax=x.abs().max(), channel_amax=x.abs().amax(0), channel_mean=x.abs().mean(0), sample=x)
    recipe = get_recipe("gptq", group_size=64)
    assert recipe.quant_algo == get_recipe("int4-awq").quant_algo and recipe.group_size == 64
    out = recipe.quantize_layer("l", w, stats, [16, 16, 16])
    assert set(out) == set(recipe.format.specs)
    for key, t in out.items():
        assert t.dtype == recipe.format.specs[key].dtype and tuple(t.shape) == recipe.format.shape(key, n, k, 3), key
    assert torch.equal(out["pre_quant_scale"], torch.ones(k))
    w_hat = recipe.format.weight(out, [16, 16, 16])
    assert torch.isfinite(w_hat).all() and torch.all(w_hat[:, 5] == 0)
