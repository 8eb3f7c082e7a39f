"""`nvfp4`: W4A4 NVFP4 (E2M1 values, E4M3 block-16 scales, fp32 global scale), pure torch so it runs on CPU.

ModelOpt's NVFP4 calibration refuses to run without CUDA; the numerics here are bit-exact with its export
(ember.quantization.numerics.nvfp4). input_scale = calibration amax / (448 * 6), as ModelOpt writes it.
"""

from __future__ import annotations

import torch

from ember.quantization.numerics import nvfp4
from ember.quantization.recipe import LayerStats, Recipe


def nvfp4_tensors(weight: torch.Tensor, stats: LayerStats | None, shard_rows: list[int], block: int,
                  act_scale: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    q, scale, scale_2 = nvfp4.quantize(weight, block)   # one global scale over the fused weight
    amax = stats.channel_amax.float() if stats is not None else torch.ones(weight.shape[1])
    if act_scale is not None:  # the activation the kernel sees is x * pre_quant_scale
        amax = amax * act_scale
    amax = amax.max()
    amax = torch.where(amax == 0, torch.tensor(1.0), amax)
    n = len(shard_rows)
    return {"weight": q, "weight_scale": scale, "weight_scale_2": scale_2.reshape(1).repeat(n),
            "input_scale": (amax / (nvfp4.E2M1_MAX * nvfp4.E4M3_MAX)).reshape(1).repeat(n)}


class NVFP4Recipe(Recipe):
    name, quant_algo, group_size = "nvfp4", "NVFP4", 16
    description = "NVFP4 W4A4, group 16, E4M3 block scales + fp32 global scale"

    def quantize_layer(self, name, weight, stats, shard_rows):
        return nvfp4_tensors(weight, stats, shard_rows, self.group_size)
