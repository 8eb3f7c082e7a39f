"""AWQ (pure torch, AWQ-lite's grid search): `int4-awq` (W4A16, group 128), `w4a8-awq` (INT4 group 128 weights, FP8
activations) and `nvfp4-awq` (W4A4, group 16).

For each linear (ember's fused q/k/v and gate/up share one input, so one search covers the fused module):
s = mean|x|^alpha (normalised), alpha on a grid in [0, 1]; pick the alpha whose quantized W*s, fed x/s,
best reproduces x W^T on a sample of calibration rows. pre_quant_scale = 1/s.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ember.quantization.numerics import fp8, int4, nvfp4, w4a8
from ember.quantization.recipe import GroupedConfig, LayerStats, Recipe


@dataclass(frozen=True)
class AWQConfig(GroupedConfig):
    grid: int = 20           # alphas 0, 1/grid, ..., (grid-1)/grid, as ModelOpt's awq_lite
    sample_rows: int = 512   # calibration rows per layer used to score each alpha


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

    def fake(self, w: torch.Tensor) -> torch.Tensor:
        return int4.dequantize(*int4.quantize(w, self.group_size))

    def quantize_layer(self, name: str, weight: torch.Tensor, stats: LayerStats | None,
                       shard_rows: list[int]) -> dict[str, torch.Tensor]:
        s = awq_scale(weight, stats, self.fake, self.config.grid)
        q, scale = int4.quantize(weight * s, self.group_size)
        return {"weight": q, "weight_scale": scale, "pre_quant_scale": 1.0 / s}


class W4A8AWQRecipe(Recipe):
    """ModelOpt's W4A8_AWQ_BETA_CFG: the AWQ search scores the weight through both of its quantizers (INT4, then
    FP8), activations unquantized (as awq_lite does); input_scale = amax of x * pre_quant_scale / 448."""

    name, quant_algo, group_size = "w4a8-awq", "W4A8_AWQ", 128
    needs_sample = True
    config_cls = AWQConfig
    description = "INT4 group-128 AWQ weights run as FP8, static FP8 per-tensor activations (W4A8)"

    def fake(self, w: torch.Tensor) -> torch.Tensor:
        return w4a8.dequantize(*w4a8.quantize(w, self.group_size))

    def quantize_layer(self, name: str, weight: torch.Tensor, stats: LayerStats | None,
                       shard_rows: list[int]) -> dict[str, torch.Tensor]:
        s = awq_scale(weight, stats, self.fake, self.config.grid)
        q, scale, scale_2 = w4a8.quantize(weight * s, self.group_size)  # one FP8 scale over the fused weight
        act_amax = (stats.channel_amax.float() / s).max()
        act_amax = torch.where(act_amax == 0, torch.tensor(fp8.E4M3_MAX, device=act_amax.device), act_amax)
        n = len(shard_rows)
        return {"weight": q, "weight_scale": scale, "weight_scale_2": scale_2.reshape(1).repeat(n),
                "input_scale": (act_amax / fp8.E4M3_MAX).reshape(1).repeat(n), "pre_quant_scale": 1.0 / s}


class NVFP4AWQRecipe(Recipe):
    name, quant_algo, group_size = "nvfp4-awq", "NVFP4_AWQ", 16
    group_sizes = (16,)  # NVFP4 fixes its block at 16 values (one E4M3 scale each)
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
