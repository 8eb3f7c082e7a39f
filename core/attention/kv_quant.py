"""FP8 (e4m3) KV cache: which dtype a cache gets, and the reference quantize / dequantize of cached k and v."""

from __future__ import annotations

from typing import Any

import torch

FP8_KV_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0                      # largest finite e4m3 value: |k / k_scale| saturates there
_NAMED = {"fp8": FP8_KV_DTYPE, "fp8_e4m3": FP8_KV_DTYPE, "bfloat16": torch.bfloat16, "float16": torch.float16,
          "float32": torch.float32}


def is_fp8(dtype: torch.dtype) -> bool:
    return dtype == FP8_KV_DTYPE


def resolve_kv_cache_dtype(name: str, model_dtype: torch.dtype, quant_config: dict[str, Any] | None
                           ) -> torch.dtype:
    """The cache dtype for EngineConfig.kv_cache_dtype `name` (see there).

    "auto" follows the checkpoint's metadata: e4m3 when its quant config declares `kv_cache_quant_algo: FP8`
    (the author calibrated k/v scales for it, as TensorRT-LLM reads it), else the model dtype.
    """
    if name == "auto":
        algo = str((quant_config or {}).get("kv_cache_quant_algo") or "").upper()
        if algo and algo != "FP8":
            raise ValueError(f"the checkpoint declares kv_cache_quant_algo {algo!r}; ember's KV cache supports "
                             "FP8 only: pass kv_cache_dtype='bfloat16' (or the model dtype) to ignore it")
        return FP8_KV_DTYPE if algo == "FP8" else model_dtype
    if name not in _NAMED:
        raise ValueError(f"kv_cache_dtype must be 'auto' or one of {sorted(_NAMED)}, got {name!r}")
    return _NAMED[name]


def quantize_kv(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x [..., D] -> e4m3 clamp(x / scale) (round to nearest even, as the Triton write kernel on CUDA)."""
    return (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_KV_DTYPE)


def dequantize_kv(x: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """e4m3 x -> (x * scale) computed in fp32, returned in `dtype`."""
    return (x.float() * scale).to(dtype)
