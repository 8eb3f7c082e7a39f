"""AWQ (pure torch, AWQ-lite's grid search): `int4-awq` (W4A16, group 128) and `nvfp4-awq` (W4A4, group 16).

For each linear (ember's fused q/k/v and gate/up share one input, so one search covers the fused module):
s = mean|x|^alpha (normalised), alpha on a grid in [0, 1]; pick the alpha whose quantized W*s, fed x/s,
best reproduces x W^T on a sample of calibration rows. pre_quant_scale = 1/s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ember.quantization.numerics import int4, nvfp4
from ember.quantization.recipe import LayerStats, Recipe, RecipeConfig


@dataclass(frozen=True)
class AWQConfig(RecipeConfig):
    grid: int = 20           # alphas 0, 1/grid, ..., (grid-1)/grid, as ModelOpt's awq_lite
    sample_rows: int = 512   # calibration rows per layer used to score each alpha
    group_size: int = 0      # 0: the recipe's default (int4-awq 128, nvfp4-awq 16)


def awq_scale(weight: torch.Tensor, stats: LayerStats, fake_quant, grid: int) -> torch.Tensor:
    """The AWQ smoothing vector s [K] (x is divided by s, W multiplied)."""
    x = stats.sample.float()                                      # [S, K]
    ref = x @ weight.T                                            # [S, N]
    mean = stats.channel_mean.float().clamp(min=1e-4)
    best, best_s = float("inf"), torch.ones_like(mean)
    for i in range(grid):
        alpha = i / grid
        s = mean.pow(alpha)
        s = s / (s.max() * s.min()).sqrt()
        err = float(((x / s) @ fake_quant(weight * s).T - ref).pow(2).mean())
        if err < best:
            best, best_s = err, s
    return best_s


class Int4AWQRecipe(Recipe):
    name, quant_algo, group_size = "int4-awq", "W4A16_AWQ", 128
    needs_sample = True
    config_cls = AWQConfig
    description = "INT4 group-128 weights with AWQ scales, fp activations (W4A16)"

    def __init__(self, config: AWQConfig | None = None) -> None:
        config = config or AWQConfig()
        if config.group_size:  # e.g. 64 for hidden sizes that 128 does not divide (SmolLM2: 576)
            self.group_size = config.group_size
        super().__init__(config)

    def fake(self, w: torch.Tensor) -> torch.Tensor:
        return int4.dequantize(*int4.quantize(w, self.group_size))

    def quantize_layer(self, name: str, weight: torch.Tensor, stats: LayerStats | None,
                       shard_rows: list[int]) -> dict[str, torch.Tensor]:
        s = awq_scale(weight, stats, self.fake, self.config.grid)
        q, scale = int4.quantize(weight * s, self.group_size)
        return {"weight": q, "weight_scale": scale, "pre_quant_scale": 1.0 / s}


class NVFP4AWQRecipe(Recipe):
    name, quant_algo, group_size = "nvfp4-awq", "NVFP4_AWQ", 16
    needs_sample = True
    config_cls = AWQConfig
    description = "NVFP4 (W4A4, group 16) with AWQ pre-quant scales"

    def fake(self, w: torch.Tensor) -> torch.Tensor:
        return nvfp4.dequantize(*nvfp4.quantize(w, self.group_size))

    def quantize_layer(self, name, weight, stats, shard_rows):
        s = awq_scale(weight, stats, self.fake, self.config.grid)
        from ember.quantization.recipes.nvfp4 import nvfp4_tensors

        out = nvfp4_tensors(weight * s, stats, shard_rows, self.group_size, act_scale=1.0 / s)
        out["pre_quant_scale"] = 1.0 / s
        return out
