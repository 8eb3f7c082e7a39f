"""FP8 E4M3 recipes: `fp8` (W8A8 per-tensor, static activation scale) and `fp8-rowwise` (per-channel / per-token)."""

from __future__ import annotations

import torch

from ember.quantization.numerics import fp8
from ember.quantization.recipe import LayerStats, Recipe


class FP8Recipe(Recipe):
    """Weights: one amax over the (fused) weight / 448. Activations: calibration amax / 448 (ModelOpt FP8)."""

    name, quant_algo = "fp8", "FP8"
    description = "W8A8 FP8 E4M3, per-tensor weight and static per-tensor activation scales"

    def quantize_layer(self, name: str, weight: torch.Tensor, stats: LayerStats | None,
                       shard_rows: list[int]) -> dict[str, torch.Tensor]:
        # One amax over the fused q/k/v weight = the max of the shard scales: what vLLM / TRT-LLM unify fused
        # layers to anyway, so the shards share it and no requantization happens at load.
        q, scale = fp8.quantize_per_tensor(weight)
        n = len(shard_rows)
        amax = stats.amax.float() if stats is not None else torch.tensor(fp8.E4M3_MAX)
        amax = torch.where(amax == 0, torch.tensor(fp8.E4M3_MAX), amax)
        return {"weight": q, "weight_scale": scale.reshape(1).repeat(n),
                "input_scale": (amax / fp8.E4M3_MAX).reshape(1).repeat(n)}


class FP8RowWiseRecipe(Recipe):
    """Weights: per output channel amax / 448. Activations: dynamic per token at run time (no calibration)."""

    name, quant_algo = "fp8-rowwise", "FP8_PER_CHANNEL_PER_TOKEN"
    needs_calibration = False
    description = "FP8 per-channel weights, dynamic per-token activations"

    def quantize_layer(self, name, weight, stats, shard_rows):
        q, scale = fp8.quantize_per_channel(weight)
        return {"weight": q, "weight_scale": scale}
