"""A recipe registered by a third-party plugin quantizes end to end; bad input fails early with a useful message."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import pytest
import torch
from safetensors.torch import load_file, save_file

from ember.plugins import get_plugin_manager, get_registry, hookimpl
from ember.quantization.numerics import fp8
from ember.quantization.recipe import Recipe, RecipeConfig, RecipeError


@dataclass(frozen=True)
class PercentileConfig(RecipeConfig):
    percentile: float = 99.9


class PercentileFP8(Recipe):
    """FP8 with weight amax clipped at a percentile: a researcher's variation, stored in the standard FP8 format."""

    name, quant_algo = "fp8-percentile", "FP8"
    config_cls = PercentileConfig

    def quantize_layer(self, name, weight, stats, shard_rows):
        amax = torch.quantile(weight.abs().flatten().float(), self.config.percentile / 100)
        q, scale = fp8.quantize_per_tensor(weight.clamp(-amax, amax), amax)
        n = len(shard_rows)
        return {"weight": q, "weight_scale": scale.reshape(1).repeat(n),
                "input_scale": (stats.amax / fp8.E4M3_MAX).reshape(1).repeat(n)}


class CustomRecipePlugin:
    @hookimpl
    def ember_register_quant_recipes(self, register):
        register("fp8-percentile", f"{__name__}:PercentileFP8")


def test_plugin_recipe_end_to_end(tiny_q_dir, qopts, tmp_path):
    from ember import LLM, SamplingParams
    from ember.quantization.workbench import quantize

    manager = get_plugin_manager()
    manager.add_plugin(CustomRecipePlugin(), name="test-recipe-plugin", distribution="test-dist")
    try:
        assert "fp8-percentile" in get_registry().names("quant_recipe")
        r = quantize(tiny_q_dir, "fp8-percentile", tmp_path / "out", qopts(recipe_options={"percentile": 99.0}))
        assert r["config"]["percentile"] == 99.0
        assert abs(math.log(r["ppl_after"] / r["ppl_before"])) < 0.05
        out = LLM(tmp_path / "out", device="cpu").generate("w5 w6", SamplingParams(max_tokens=4))
        assert len(out[0].outputs[0].token_ids) == 4
    finally:
        manager.remove_plugin("test-recipe-plugin")
    assert "fp8-percentile" not in get_registry().names("quant_recipe")


def test_unknown_method_lists_registered(tiny_q_dir, qopts, tmp_path):
    from ember.quantization.workbench import quantize

    with pytest.raises(Exception, match=r"unknown quant recipe 'fp9'.*fp8, .*int4-awq"):
        quantize(tiny_q_dir, "fp9", tmp_path / "x", qopts())
    assert not (tmp_path / "x").exists()


def test_unknown_calibration_dataset_lists_registered(tiny_q_dir, qopts, tmp_path):
    from ember.quantization.workbench import quantize

    with pytest.raises(Exception, match=r"lee-news"):
        quantize(tiny_q_dir, "fp8", tmp_path / "x", qopts(calib="no-such-corpus"))


def test_group_size_mismatch_names_layer_and_suggests_exclude(tiny_llama_dir, qopts, tmp_path):
    """tiny_llama has hidden 64: int4-awq's group 128 cannot cut it; the error names the layer before any work."""
    from ember.quantization.workbench import quantize

    with pytest.raises(RecipeError, match=r"model\.layers\.0\.self_attn\.q_proj.*input dim 64.*group size 128"
                                          r".*--exclude"):
        quantize(tiny_llama_dir, "int4-awq", tmp_path / "x", qopts())
    assert not (tmp_path / "x").exists()
    # excluding every layer with K=64 leaves down_proj (K=128), which quantizes
    r = quantize(tiny_llama_dir, "int4-awq", tmp_path / "y", qopts(exclude=("*.self_attn.*", "*.gate_proj",
                                                                            "*.up_proj"), eval_dataset=None,
                                                                   recipe_options={"grid": 2}))
    assert [e["checkpoint_names"] for e in r["layers"]] == ["model.layers.0.mlp.down_proj",
                                                           "model.layers.1.mlp.down_proj"]
    hq = json.loads((tmp_path / "y" / "hf_quant_config.json").read_text())["quantization"]
    assert "model.layers.0.self_attn.q_proj" in hq["exclude_modules"] and hq["group_size"] == 128


def test_existing_output_refused_without_force(tiny_q_dir, qopts, tmp_path):
    from ember.quantization.workbench import quantize

    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="--force"):
        quantize(tiny_q_dir, "int8-wo", out, qopts(eval_dataset=None))
    assert (out / "keep.txt").read_text() == "mine"
    quantize(tiny_q_dir, "int8-wo", out, qopts(eval_dataset=None, force=True))
    assert not (out / "keep.txt").exists() and (out / "hf_quant_config.json").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp dirs left behind


def test_nan_weights_stop_with_layer_named_and_write_nothing(tiny_q_dir, qopts, tmp_path):
    import shutil

    from ember.quantization.workbench import quantize

    src = tmp_path / "nan-model"
    shutil.copytree(tiny_q_dir, src)
    tensors = load_file(src / "model.safetensors")
    tensors["model.layers.1.mlp.down_proj.weight"][3, 5] = float("nan")
    save_file(tensors, str(src / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(RecipeError, match=r"layer model\.layers\.1\.mlp\.down_proj: .*NaN.*nothing was written"):
        quantize(src, "fp8", tmp_path / "out", qopts(eval_dataset=None))
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_recipe_option_lists_options():
    from ember.quantization.recipes.int8 import SmoothQuantRecipe

    assert SmoothQuantRecipe.parse_options(["alpha=0.8"]) == {"alpha": 0.8}
    with pytest.raises(RecipeError, match="options: alpha"):
        SmoothQuantRecipe.parse_options(["beta=1"])


def test_unsupported_checkpoint_format_is_named(tiny_q_dir, tmp_path):
    import shutil

    from ember.loader.build import load_model

    src = tmp_path / "w4a8-nvfp4"
    shutil.copytree(tiny_q_dir, src)
    (src / "hf_quant_config.json").write_text(json.dumps({"quantization": {"quant_algo": "W4A8_NVFP4_FP8"}}))
    with pytest.raises(ValueError, match="'W4A8_NVFP4_FP8' is not supported.*FP8"):
        load_model(src, torch.float32, "cpu")
