"""INT8 recipes: `int8-wo` (W8A16 per-channel) and `int8-sq` (SmoothQuant W8A8, pure torch)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ember.quantization.numerics import int8
from ember.quantization.recipe import LayerStats, Recipe, RecipeConfig


class Int8WeightOnlyRecipe(Recipe):
    name, quant_algo = "int8-wo", "W8A16"
    needs_calibration = False
    description = "INT8 per-channel weights, fp activations"

    def quantize_layer(self, name, weight, stats, shard_rows):
        q, scale = int8.quantize(weight)
        return {"weight": q, "weight_scale": scale}


@dataclass(frozen=True)
class SmoothQuantConfig(RecipeConfig):
    alpha: float = 1.0  # migration strength; 1.0 is ModelOpt's default (the SmoothQuant paper uses 0.5)


class SmoothQuantRecipe(Recipe):
    """s_j = amax_x_j^alpha / amax_w_j^(1-alpha); x' = x / s (stored as pre_quant_scale = 1/s), W' = W * s;
    INT8 per-channel weights, static per-tensor INT8 activation scale from the smoothed calibration amax.

    Pure torch, on ember's fused modules: q/k/v (and gate/up) share one smoothing vector because they share one
    input, which is what ModelOpt's export makes of them too (`requantize_resmooth_fused_llm_layers`).
    """

    name, quant_algo = "int8-sq", "W8A8_SQ_PER_CHANNEL"
    config_cls = SmoothQuantConfig
    description = "SmoothQuant W8A8 INT8 (per-channel weights, static per-tensor activations)"

    def quantize_layer(self, name: str, weight: torch.Tensor, stats: LayerStats | None,
                       shard_rows: list[int]) -> dict[str, torch.Tensor]:
        a = self.config.alpha
        x_amax = stats.channel_amax.float().clamp(min=1e-5)              # [K]
        w_amax = weight.abs().amax(0).float().clamp(min=1e-5)            # [K]
        s = (x_amax.pow(a) / w_amax.pow(1 - a)).clamp(min=1e-5)          # [K]
        q, scale = int8.quantize(weight * s)
        act_amax = (x_amax / s).max()
        n = len(shard_rows)
        return {"weight": q, "weight_scale": scale, "pre_quant_scale": 1.0 / s,
                "input_scale": (act_amax / int8.INT8_MAX).reshape(1).repeat(n)}
