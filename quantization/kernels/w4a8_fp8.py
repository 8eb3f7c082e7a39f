"""W4A8_AWQ on the GPU: the INT4 weight staged once, at load, into the FP8 weight the format defines, then FP8 W8A8.

Why no 4-bit kernel: a W4A8 weight *is* e4m3(q * weight_scale / weight_scale_2) * weight_scale_2 (ModelOpt's
W4A8_AWQ, formats.W4A8AWQ.weight), so computing that FP8 tensor once gives exactly the checkpoint's numerics, and the
matmul then runs where Hopper is fastest: FP8 tensor cores (`act_quant.fp8_scaled_mm`, the `fp8` recipe's path),
with the activation multiplied by pre_quant_scale and quantized to e4m3 in one kernel. Memory: 8 bits a weight on
the GPU; where the FP8 kernels serve every call (`serves_every_call`), QuantLinear.finalize_ moves the 4-bit
checkpoint tensors (weight, weight_scale) to host memory, where export and the CPU fallback read them.
"""

from __future__ import annotations

import torch

from ember.quantization.kernels import dispatch
from ember.quantization.numerics import fp8, int4


@torch.no_grad()
def prepare(layer) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(weight e4m3 [N, K], weight_scale_2 fp32 [1], input_scale fp32 [1]) of a finalized W4A8_AWQ QuantLinear
    (finalize gave the fused shards one weight_scale_2; the activation uses the largest input_scale, as act())."""
    scale_2 = layer.weight_scale_2.float().max().reshape(1)
    w8 = fp8.cast(int4.dequantize(layer.weight, layer.weight_scale), scale_2)      # [N, K], as fp8_stage
    return w8, scale_2, layer.input_scale.float().max().reshape(1)


def serves_every_call(layer) -> bool:
    """True when the FP8 kernels take every forward of this layer (kernels on, a 16-bit compute dtype, N and K
    multiples of 16: the "mm" path's terms), so the dequantize fallback never needs the 4-bit tensors on the GPU."""
    return (dispatch.ENABLED and layer.compute_dtype in (torch.bfloat16, torch.float16)
            and layer.out_features % 16 == 0 and layer.in_features % 16 == 0)
