"""Random quantized models for benchmarks: swap a random-weight model's linears for QuantLinears of a recipe's format.

No calibration: each weight is quantized with the reference numerics on its own device (GPU: seconds for an 8B
model), activation scales come from a fixed amax (4.0), pre_quant_scale is ones. Speed does not depend on the
values; the outputs are the quantized random model's, so kernels and fallback can be compared on them.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ember.quantization.numerics import fp8, int4, int8, nvfp4, w4a8


def _fp8(w, g, amax):
    q, s = fp8.quantize_per_tensor(w)
    return {"weight": q, "weight_scale": s, "input_scale": amax / fp8.E4M3_MAX}


def _fp8_rowwise(w, g, amax):
    q, s = fp8.quantize_per_channel(w)
    return {"weight": q, "weight_scale": s}


def _int8_wo(w, g, amax):
    q, s = int8.quantize(w)
    return {"weight": q, "weight_scale": s}


def _int8_sq(w, g, amax):
    return {**_int8_wo(w, g, amax), "input_scale": amax / int8.INT8_MAX}


def _int4(w, g, amax):
    q, s = int4.quantize(w, g or 128)
    return {"weight": q, "weight_scale": s}


def _nvfp4(w, g, amax):
    q, s, s2 = nvfp4.quantize(w, g or 16)
    return {"weight": q, "weight_scale": s, "weight_scale_2": s2,
            "input_scale": amax / (nvfp4.E2M1_MAX * nvfp4.E4M3_MAX)}


def _w4a8(w, g, amax):
    q, s, s2 = w4a8.quantize(w, g or 128)
    return {"weight": q, "weight_scale": s, "weight_scale_2": s2, "input_scale": amax / fp8.E4M3_MAX}


QUANTIZERS: dict[str, Callable] = {"FP8": _fp8, "FP8_PER_CHANNEL_PER_TOKEN": _fp8_rowwise, "W8A16": _int8_wo,
                                   "W8A8_SQ_PER_CHANNEL": _int8_sq, "W4A16_AWQ": _int4, "NVFP4": _nvfp4,
                                   "NVFP4_AWQ": _nvfp4, "W4A8_AWQ": _w4a8}


@torch.no_grad()
def fill_random_(layer: nn.Module, weight: torch.Tensor, act_amax: float = 4.0) -> nn.Module:
    """Quantize `weight` [N, K] into QuantLinear `layer` (its format, reference numerics), then finalize it.
    Tensors the quantizer does not produce keep their init (pre_quant_scale: ones)."""
    algo = layer.format.quant_algo
    if algo not in QUANTIZERS:
        raise ValueError(f"no random quantizer for format {algo!r}; known: {', '.join(sorted(QUANTIZERS))}")
    out = QUANTIZERS[algo](weight.float(), layer.format.group_size, torch.tensor(act_amax, device=weight.device))
    for name, value in out.items():
        param = getattr(layer, name)
        param.data.copy_(value.to(param.dtype).reshape(-1).expand(param.numel()).reshape(param.shape)
                         if layer.format.specs[name].mode == "scalar" else value)
    layer.finalize_()
    return layer


@torch.no_grad()
def quantize_random_(model: nn.Module, method: str, act_amax: float = 4.0) -> dict[str, nn.Module]:
    """Replace every linear the recipe `method` targets (fp8, int8-sq, int8-wo, int4-awq, nvfp4, ...) by a
    QuantLinear holding its current weights quantized; returns {module name: QuantLinear}."""
    from ember.loader.quantized import target_linears
    from ember.quantization.linear import QuantLinear
    from ember.quantization.recipe import get_recipe

    recipe = get_recipe(method)
    fmt = recipe.format
    swapped = {}
    for name, module in target_linears(model, recipe.config.exclude, recipe.config.include_lm_head).items():
        why = recipe.check_layer(name, module.out_features, module.in_features)
        if why:
            raise ValueError(f"{method} cannot quantize {name}: {why}")
        sizes = getattr(module, "output_sizes", [module.out_features])
        shard_names = {"q": 0, "k": 1, "v": 2} if hasattr(module, "q_size") else {}
        q = QuantLinear(fmt, module.in_features, sizes, module.bias is not None, module.weight.dtype,
                        module.weight.device, shard_names)
        fill_random_(q, module.weight, act_amax)
        if module.bias is not None:
            q.bias.data.copy_(module.bias)
        parent, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, leaf, q)
        swapped[name] = q
    return swapped
