"""W4A8 AWQ weights (`w4a8_awq`: INT4 group-wise, dequantized to FP8 E4M3 for an FP8 GEMM) as ModelOpt exports them.

ModelOpt quantizes the weight with two quantizers in sequence: INT4 per group (scale = group amax / 7), then the
result to FP8 per tensor (scale = amax / 448 of the INT4-dequantized weight, which equals the weight amax). The
unified HF export stores the first as `weight_scale` fp32 [N, K/group] (NOT divided by the second) and the second
as `weight_scale_2` fp32 []; `weight` is packed exactly as `int4_awq` (ember.quantization.numerics.int4).
The runtime (TensorRT-LLM's W4A8_AWQ_LinearMethod) divides `weight_scale` by `weight_scale_2` at load so that
q * weight_scale / weight_scale_2 is an FP8 operand and rescales the GEMM output by input_scale * weight_scale_2:
w_hat = e4m3(q * weight_scale / weight_scale_2) * weight_scale_2, bit-exact with ModelOpt's fp32 fake quant.
"""

from __future__ import annotations

import torch

from ember.quantization.numerics import fp8, int4


def quantize(w: torch.Tensor, group_size: int = 128) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """w [N, K] -> (weight uint8 [N/2, K], weight_scale fp32 [N, K/group], weight_scale_2 fp32 [])."""
    packed, scale = int4.quantize(w, group_size)
    return packed, scale, global_scale(w)


def global_scale(w: torch.Tensor) -> torch.Tensor:
    """weight_scale_2 = amax / 448 (the INT4-dequantized weight has the same amax: each group's max maps to +-7)."""
    amax = w.abs().amax().float()
    return torch.where(amax == 0, torch.tensor(fp8.E4M3_MAX, device=w.device), amax) / fp8.E4M3_MAX


def fp8_stage(w_int4: torch.Tensor, scale_2: torch.Tensor) -> torch.Tensor:
    """The INT4-dequantized weight [N, K] through the FP8 quantizer: e4m3(w / scale_2) * scale_2, fp32.
    `scale_2` is a scalar or per row [N, 1]; |w / scale_2| <= 448 when scale_2 comes from `global_scale`."""
    scale_2 = scale_2.float()
    return fp8.cast(w_int4, scale_2).float() * scale_2


def dequantize(packed: torch.Tensor, scale: torch.Tensor, scale_2: torch.Tensor,
               dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 [N/2, K], fp32 [N, G], fp32 [] (or [N, 1]) -> [N, K]."""
    return fp8_stage(int4.dequantize(packed, scale), scale_2).to(dtype)
