"""Every registered recipe (from the live registry) quantizes a tiny Llama end to end, exports, reloads and
generates; perplexity stays within a recipe-specific bound that a broken scale breaks."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load_file, save_file

from ember.plugins import get_registry
from ember.quantization.recipe import get_recipe

# |ln ppl_after - ln ppl_before| on the tiny random model (word-level text), about 3x what was measured
# (fp8 0.004, fp8-rowwise 0.005, int8-wo 0.0001, int8-sq 0.003, int4-awq 0.008, w4a8-awq 0.020, gptq 0.004,
# nvfp4 0.020, nvfp4-awq 0.038); fp8 input scales 20x too small move it by 0.076 (test_bound_catches_a_broken_scale).
BOUNDS = {"fp8": 0.015, "fp8-rowwise": 0.015, "int8-wo": 0.005, "int8-sq": 0.01, "int4-awq": 0.03, "w4a8-awq": 0.06,
          "gptq": 0.012, "nvfp4": 0.06, "nvfp4-awq": 0.1}
DEFAULT_BOUND = 0.15  # a recipe registered by a plugin that this table does not know yet
RECIPES = get_registry().names("quant_recipe")


def recipe_options(name: str) -> dict:
    fields = get_recipe(name).config_cls.__dataclass_fields__
    return {"grid": 4} if "grid" in fields else {}  # AWQ searches: a coarse grid keeps the test fast


def test_builtin_recipes_registered():
    assert {"fp8", "fp8-rowwise", "int8-wo", "int8-sq", "int4-awq", "w4a8-awq", "gptq", "nvfp4", "nvfp4-awq"} \
        <= set(RECIPES)


@pytest.mark.parametrize("method,default", [("int4-awq", 128), ("w4a8-awq", 128), ("gptq", 128), ("nvfp4-awq", 16)])
def test_group_size_option(method, default):
    """The Recipe base applies `group_size` to the recipe and its format; NVFP4 takes only its block of 16."""
    from ember.quantization.recipe import Recipe, RecipeError

    assert get_recipe(method).group_size == default and get_recipe(method).format.group_size == default
    assert Recipe.group_size is None  # the override is per instance, never on the class
    if method == "nvfp4-awq":
        assert get_recipe(method, group_size=16).group_size == 16
        with pytest.raises(RecipeError, match="group_size 32 is not valid .*16"):
            get_recipe(method, group_size=32)
    else:
        r = get_recipe(method, **get_recipe(method).parse_options(["group_size=64"]))
        assert r.group_size == 64 and r.format.group_size == 64 and type(r).group_size == default
    with pytest.raises(RecipeError, match="not valid"):
        get_recipe(method, group_size=-8)


@pytest.mark.parametrize("method", RECIPES)
def test_recipe_end_to_end(method, tiny_q_dir, qopts, tmp_path):
    from ember import LLM, SamplingParams
    from ember.quantization.linear import QuantLinear
    from ember.quantization.workbench import quantize

    out = tmp_path / method
    r = quantize(tiny_q_dir, method, out, qopts(kv_cache="fp8", recipe_options=recipe_options(method)))
    for f in ("model.safetensors", "config.json", "hf_quant_config.json", "report.json", "report.md",
              "tokenizer.json"):
        assert (out / f).exists(), f
    drift = abs(math.log(r["ppl_after"]) - math.log(r["ppl_before"]))
    assert drift < BOUNDS.get(method, DEFAULT_BOUND), (method, r["ppl_before"], r["ppl_after"])
    assert r["size_after_bytes"] < r["size_before_bytes"]
    tensors = load_file(out / "model.safetensors")
    assert "model.layers.0.self_attn.k_proj.k_scale" in tensors and "model.layers.0.self_attn.qkv_proj.weight" \
        not in tensors
    llm = LLM(out, device="cpu")
    qkv = llm.model.model.layers[0].self_attn.qkv_proj
    assert isinstance(qkv, QuantLinear) and qkv.format.quant_algo == r["quant_algo"]
    assert not isinstance(llm.model.lm_head, QuantLinear)
    text = llm.generate("w5 w6 w7", SamplingParams(max_tokens=8, temperature=0.0))[0].outputs[0]
    assert len(text.token_ids) == 8


def test_bound_catches_a_broken_scale(tiny_q_dir, words_txt, qopts, tmp_path):
    """Same check as above on an fp8 checkpoint whose input scales are 20x too small (activations clip)."""
    from ember.evaluation import perplexity
    from ember.quantization.workbench import quantize

    out = tmp_path / "fp8"
    r = quantize(tiny_q_dir, "fp8", out, qopts())
    tensors = load_file(out / "model.safetensors")
    for k in tensors:
        if k.endswith("input_scale"):
            tensors[k] = tensors[k] / 20
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    broken = perplexity(out, str(words_txt), seq_len=64, num_windows=4).ppl
    assert abs(math.log(broken) - math.log(r["ppl_before"])) > BOUNDS["fp8"] * 3


def test_bf16_pre_quant_scale_as_modelopt_writes_it_loads(tiny_q_dir, words_txt, qopts, tmp_path):
    """ModelOpt stores pre_quant_scale in the model dtype (bf16); ember (fp32) reads either, to the same model
    up to the bf16 rounding of the scales."""
    from ember.evaluation import perplexity
    from ember.quantization.workbench import quantize

    out = tmp_path / "awq"
    quantize(tiny_q_dir, "int4-awq", out, qopts(recipe_options={"grid": 4}))
    fp32 = perplexity(out, str(words_txt), seq_len=64, num_windows=4).ppl
    tensors = load_file(out / "model.safetensors")
    assert any(k.endswith("pre_quant_scale") for k in tensors)
    tensors = {k: v.to(torch.bfloat16) if k.endswith("pre_quant_scale") else v for k, v in tensors.items()}
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    bf16 = perplexity(out, str(words_txt), seq_len=64, num_windows=4).ppl
    assert abs(math.log(bf16) - math.log(fp32)) < 1e-2


def test_fused_shards_with_different_scales_requantize_to_max():
    """A checkpoint whose q/k/v carry different FP8 scales (ModelOpt without resmoothing, other tools): the fused
    module keeps one scale, the max, as vLLM's requantize_with_max_scale does; the weight stays close."""
    from ember.quantization.formats import get_format
    from ember.quantization.linear import QuantLinear
    from ember.quantization.numerics import fp8

    torch.manual_seed(0)
    ws = [torch.randn(32, 64) * s for s in (1.0, 0.1, 3.0)]
    layer = QuantLinear(get_format("FP8"), 64, [32, 32, 32], False, torch.float32, "cpu", {"q": 0, "k": 1, "v": 2})
    for shard, w in zip("qkv", ws):
        q, s = fp8.quantize_per_tensor(w)
        layer.weight_loader(layer.weight, q, shard)
        layer.weight_loader(layer.weight_scale, s, shard)
        layer.weight_loader(layer.input_scale, torch.tensor(0.01 * (1 + "qkv".index(shard))), shard)
    layer.finalize_()
    assert torch.all(layer.weight_scale == layer.weight_scale.max())
    assert torch.all(layer.input_scale == 0.03)
    dense = layer.dense_weight()
    for i, w in enumerate(ws):
        got = dense[32 * i:32 * (i + 1)]
        assert float((got - w).norm() / w.norm()) < 0.1, i  # the small-scale shard loses some precision


def test_memory_figures_on_cpu_are_parameter_bytes(tiny_q_dir, qopts, tmp_path):
    """Off CUDA the report keeps parameter bytes (labelled as such) and no measured GPU figures."""
    from ember.quantization.workbench import quantize

    r = quantize(tiny_q_dir, "int8-wo", tmp_path / "int8", qopts(eval_dataset=None))
    assert 0 < r["weights_memory_after_bytes"] < r["weights_memory_before_bytes"]
    assert not any(k.startswith("gpu_memory") for k in r)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (run on the GPU machine)")
def test_memory_figures_on_cuda_are_measured(tiny_q_dir, qopts, tmp_path):
    """On CUDA: torch.cuda.memory_allocated of the loaded fp32 model vs the reloaded quantized one, and the peak."""
    from ember.quantization.workbench import quantize

    r = quantize(tiny_q_dir, "int8-wo", tmp_path / "int8", qopts(device="cuda"))
    before, after = r["gpu_memory_allocated_before_bytes"], r["gpu_memory_allocated_after_bytes"]
    assert r["weights_memory_before_bytes"] <= before  # at least the parameters (allocator rounding on top)
    assert 0 < after < before <= r["gpu_memory_peak_bytes"]
