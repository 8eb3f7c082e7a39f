"""GPTQ: on one linear with correlated inputs its output error beats round-to-nearest int4 (same groups, same
stored format); the Hessian accumulator covers every calibration token; sequential calibration feeds each linear
the outputs of the already quantized linears and layers before it (Llama and Gemma3 layer signatures). End-to-end
export / reload / generate runs in test_recipes.py (every registered recipe)."""

from __future__ import annotations

import copy

import pytest
import torch

from ember.quantization.calibrate import _Collector, calibrate, calibrate_sequential
from ember.quantization.numerics import int4
from ember.quantization.recipe import LayerStats, get_recipe
from ember.quantization.recipes.gptq import gptq_quantize


def correlated(rows: int, k: int, seed: int) -> torch.Tensor:
    """Inputs with strongly correlated channels and uneven scales, as LLM activations have."""
    g = torch.Generator().manual_seed(seed)
    mix = torch.randn(k, k, generator=g) / k ** 0.5 + torch.eye(k)
    scales = torch.rand(k, generator=g) * 3 + 0.1
    latent = torch.randn(rows, 16, generator=g) @ torch.randn(16, k, generator=g)  # low-rank shared component
    return (torch.randn(rows, k, generator=g) @ mix + 2 * latent) * scales


def reference_hessian(x: torch.Tensor) -> torch.Tensor:
    """H = 2 X^T X / n in float64, the GPTQ paper's definition."""
    x = x.double()
    return (2.0 * x.T @ x / x.shape[0]).float()


def output_error(x, w, w_hat):
    return float((x @ w.T - x @ w_hat.T).norm())


@pytest.mark.parametrize("act_order", [False, True])
def test_gptq_beats_round_to_nearest(act_order):
    torch.manual_seed(0)
    n, k, group = 64, 256, 128
    w = torch.randn(n, k) * 0.05
    x = correlated(4096, k, seed=1)
    x_cal, x_test = x[:2048], x[2048:]  # held-out rows of the same distribution
    q, scale = gptq_quantize(w, reference_hessian(x_cal), group_size=group, act_order=act_order)
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


def test_hessian_accumulates_every_token():
    """Batches of different sizes through the hook: the running mean equals 2 X^T X / n over all rows."""
    x = correlated(1000, 64, seed=3)
    c = _Collector(keep_rows=0, seed=0, hessian=True)
    for chunk in x.split([7, 300, 1, 512, 180]):
        c(None, (chunk.reshape(1, -1, 64),))  # [B, T, K] inputs are flattened to rows
    st = c.stats()
    assert c.count == 1000 and st.hessian.dtype == torch.float32
    torch.testing.assert_close(st.hessian, reference_hessian(x), rtol=1e-5, atol=1e-4)


def test_gptq_recipe_layout_and_dead_columns():
    torch.manual_seed(0)
    n, k = 48, 256
    w = torch.randn(n, k) * 0.05
    x = correlated(512, k, seed=2)
    x[:, 5] = 0.0  # a dead input channel
    stats = LayerStats(amax=x.abs().max(), channel_amax=x.abs().amax(0), channel_mean=x.abs().mean(0),
                       hessian=reference_hessian(x))
    recipe = get_recipe("gptq", group_size=64)
    assert recipe.quant_algo == get_recipe("int4-awq").quant_algo and recipe.group_size == 64
    assert recipe.sequential and recipe.needs_hessian and not recipe.needs_sample
    out = recipe.quantize_layer("l", w, stats, [16, 16, 16])
    assert set(out) == set(recipe.format.specs)
    for key, t in out.items():
        assert t.dtype == recipe.format.specs[key].dtype and tuple(t.shape) == recipe.format.shape(key, n, k, 3), key
    assert torch.equal(out["pre_quant_scale"], torch.ones(k))
    w_hat = recipe.format.weight(out, [16, 16, 16])
    assert torch.isfinite(w_hat).all() and torch.all(w_hat[:, 5] == 0)


def _rtn(w: torch.Tensor) -> torch.Tensor:
    return int4.dequantize(*int4.quantize(w, 64))


@pytest.fixture(scope="module", params=["LlamaForCausalLM", "Gemma3ForCausalLM"])
def tiny_model(request, tmp_path_factory):
    from ember.loader.build import load_model
    from ember.plugins import get_registry
    from ember.plugins.testing import tiny_checkpoint

    path = tmp_path_factory.mktemp(request.param)
    tiny = get_registry().load("model", request.param).tiny_config
    tiny_checkpoint(request.param, path, {**tiny, "hidden_size": 64, "intermediate_size": 128}, initializer_range=0.1)
    return load_model(path, torch.float32, "cpu")


def test_sequential_calibration_sees_quantized_predecessors(tiny_model):
    """Each linear's Hessian in sequential calibration equals the one an ordinary pass measures on a model whose
    earlier linears (this layer's and every previous layer's) are quantized and the rest are not."""
    from ember.loader.quantized import target_linears

    model = tiny_model
    targets = target_linears(model)
    originals = {n: m.weight.detach().clone() for n, m in targets.items()}
    batches = torch.randint(3, 300, (6, 24), generator=torch.Generator().manual_seed(0))
    got: dict[str, torch.Tensor] = {}

    def quantize(name, stats):
        got[name] = stats.hessian
        return _rtn(targets[name].weight.data)

    kv = calibrate_sequential(model, targets, batches, batch_size=4, quantize=quantize, hessian=True, kv_cache=True)
    assert list(got) == list(targets)  # forward order is module order in these families
    assert sorted(kv) == list(range(len(model.model.layers)))
    for n, m in targets.items():  # the original weights are back
        assert torch.equal(m.weight.data, originals[n]), n

    names = list(targets)
    for i in sorted({1, 3, 4, 5, len(names) - 1}):  # inside layer 0, both sides of the layer boundary, the last
        name = names[i]
        ref = copy.deepcopy(model)
        ref_targets = target_linears(ref)
        for earlier in names[:i]:
            ref_targets[earlier].weight.data = _rtn(ref_targets[earlier].weight.data)
        stats, _ = calibrate(ref, {name: ref_targets[name]}, batches, batch_size=4, hessian=True)
        torch.testing.assert_close(got[name], stats[name].hessian, rtol=1e-4, atol=1e-5, msg=name)
    # the sequential inputs differ from the full-precision ones past the first linear (the test can fail)
    fp, _ = calibrate(model, targets, batches, batch_size=4, hessian=True)
    last = names[-1]
    assert not torch.allclose(fp[last].hessian, got[last], rtol=1e-3, atol=1e-4)
