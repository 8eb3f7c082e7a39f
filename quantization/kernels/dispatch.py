"""Which GPU kernel runs a QuantLinear forward, per format and M (rows); None -> the dequantize-then-matmul fallback.

Kernels by format (`quant_algo` -> kind):
  W4A16_AWQ -> int4 (M <= tinygemm.MAX_M in bf16: aten's tinygemm kernel, see tinygemm.py), NVFP4 / NVFP4_AWQ ->
  nvfp4 (weight-only, dequantized in registers): "h2" (w4_gemv.py, packed half2 on the checkpoint layout) and
  "ew2" (w4a16.py elementwise) for M <= 4, w4a16.py "dot" (optionally split-K) for any M, and "dq" (dequant.py: a
  dense weight for the call, then cuBLAS) past M = 128 (prefill sizes; INT4 and W8A16 past 256);
  FP8 -> fp8, FP8_PER_CHANNEL_PER_TOKEN -> fp8_rowwise, W8A16 -> int8_wo, W8A8_SQ_PER_CHANNEL -> int8_sq
  (w8.py: the activation quantized in registers; "h2": the FP8-weight packed-half2 GEMV, w8_gemv.py, at M <= 4-8;
  "mm" configs: act_quant.py + cuBLAS, FP8 per-tensor and per-token past the GEMVs, SmoothQuant INT8 at M > 16
  where measured faster); W4A8_AWQ -> w4a8 (the FP8 weight staged at load, w4a8_fp8.py, then whatever the table
  chose for FP8 at that shape).
A Config per (kind, N, K, M bucket) comes from `TABLE` (measured on an H100 by benchmarks/quant_bench.py) or, for
shapes not measured, from `default_config`. CPU tensors, fp32 activations, formats not listed here and shapes the
kernels cannot take (K not a multiple of 16) return None. EMBER_QUANT_KERNELS=0 turns all of it off (A/B runs).
"""

from __future__ import annotations

import os
from typing import NamedTuple

import torch

from ember.quantization.kernels import tinygemm
from ember.quantization.kernels.table import MEASURED

ENABLED = os.environ.get("EMBER_QUANT_KERNELS", "1") != "0"

KINDS = {"W4A16_AWQ": "int4", "NVFP4": "nvfp4", "NVFP4_AWQ": "nvfp4", "FP8": "fp8",
         "FP8_PER_CHANNEL_PER_TOKEN": "fp8_rowwise", "W8A16": "int8_wo", "W8A8_SQ_PER_CHANNEL": "int8_sq",
         "W4A8_AWQ": "w4a8"}
# Weight-only kinds with a "dq" path (dequant.py) -> the M above which it runs by default: measured faster than the
# in-register kernels there (kernels/table.py, docs/performance.md sessions 6 and 8; tl.dot still won W8A16 and,
# since its TMA loads, INT4 at 256)
DENSE_ABOVE_M = {"int4": 256, "nvfp4": 128, "int8_wo": 256}
FP8_WEIGHT = ("fp8", "fp8_rowwise", "w4a8")   # the kinds whose GEMMs run on an e4m3 weight
_W8_ACT = {"fp8": "fp8", "fp8_rowwise": "fp8_token", "int8_wo": "none", "int8_sq": "int8", "w4a8": "fp8"}


class Config(NamedTuple):
    # kind: "ew" (w8.py elementwise GEMV), "h2" (packed-half2 GEMVs: 4-bit or FP8 weights), "ew2" (4-bit
    # elementwise GEMV), "dot" (tl.dot, weight as A operand), "mm" (quantize x + cuBLAS) or "dq" (weight-only:
    # dequantize + cuBLAS, dequant.py); split_k: the 4-bit kernels and "h2"; "h2" num_stages 2: double-buffered loads
    kind: str
    block_m: int
    block_n: int       # int4: packed rows (two output rows each)
    block_k: int       # K elements a step
    num_warps: int = 4
    num_stages: int = 1
    split_k: int = 1


# (kind, N, K, M bucket) -> Config: the H100 measurements of benchmarks/quant_bench.py (kernels/table.py).
TABLE: dict[tuple[str, int, int, int], Config] = {key: Config(*cfg) for key, cfg in MEASURED.items()}


def m_bucket(m: int) -> int:
    """1, 2, 4, ... 256, then 512 for every larger M (prefill)."""
    return min(512, 1 << max(0, m - 1).bit_length())


def default_config(kind: str, m: int) -> Config:
    """A reasonable config for shapes the table has not measured."""
    fp8_weight = kind in FP8_WEIGHT
    if fp8_weight and m <= 4:     # the FP8 half2 GEMV: best on 11 of 12 Qwen3-8B (shape, M) at M <= 4 (session 9)
        return {1: Config("h2", 1, 8, 1024, 4, 1, 1), 2: Config("h2", 2, 16, 512, 4, 2, 1)}.get(
            m, Config("h2", 4, 32, 256, 4, 1, 4))
    if fp8_weight or (kind == "int8_sq" and m > 16):
        return Config("mm", 0, 0, 0)          # cuBLAS FP8 beat the FP8 GEMVs above M = 4-8
    if m > DENSE_ABOVE_M.get(kind, m):
        return Config("dq", 0, 0, 0)          # prefill: dequantize once, then cuBLAS (dequant.py)
    if m <= 4 and kind == "nvfp4":
        return Config("h2", 1, 64, 512, 4, 1, 4) if m == 1 else Config("h2", m_bucket(m), 64, 256, 4, 1, 4)
    if m == 1 and kind == "int4":
        return Config("h2", 1, 16, 256, 4, 1, 8)      # best or near it on every Qwen3-8B shape (session 7)
    if m == 2 and kind == "int4":
        return Config("h2", 2, 32, 256, 4, 1, 4)      # beat tl.dot on 3 of 4 shapes, 0.7% behind on the 4th
    if m <= 16 and kind in ("int4", "nvfp4"):
        return Config("dot", 16, 64, 128, 4, 3, 4)      # INT4: h2 lost to it at M = 4; best on most shapes to 16
    if kind in ("int4", "nvfp4"):
        return Config("dot", 64, 64, 128, 4, 3, 4)      # best or near it on most Qwen3-8B shapes at M = 64-256
    return _w8_default(m)


def _w8_default(m: int) -> Config:
    """w8.py's kernel for an unmeasured 8-bit shape: the GEMV to M = 4, tl.dot above."""
    if m <= 2:
        return Config("ew", m_bucket(m), 4, 512, 4, 1)
    if m <= 4:
        return Config("ew", 4, 4, 256, 4, 1)
    if m <= 16:
        return Config("dot", 16, 32, 256, 4, 3)
    return Config("dot", 64, 64, 128, 4, 3)


def lookup(kind: str, n: int, k: int, m: int) -> Config | None:
    """The config for this call, its block_k shrunk to divide K; None where no kernel can take the shape."""
    # why: W4A8 runs on its staged FP8 weight, the same GEMMs as FP8 (plus a pre_quant_scale multiply)
    cfg = TABLE.get(("fp8" if kind == "w4a8" else kind, n, k, m_bucket(m))) or default_config(kind, m)
    if cfg.kind == "mm":
        if k % 16 == 0 and n % 16 == 0 and (kind in FP8_WEIGHT or kind == "int8_sq" and m > 16):
            return cfg
        if kind != "fp8_rowwise":
            return None
        cfg = _w8_default(m)   # w8.py takes the shapes cuBLAS cannot (N % 16)
    if cfg.kind == "dq":
        return cfg if kind in DENSE_ABOVE_M and k % 16 == 0 else None
    bk = cfg.block_k
    # why 32 for NVFP4 through w4a16.py: its TMA box of weight bytes (bk / 2) must be >= 16 bytes
    min_bk = 32 if kind == "nvfp4" and cfg.kind in ("dot", "ew2") else 16
    while bk > min_bk and k % bk:
        bk //= 2
    if k % bk or (cfg.kind in ("ew", "ew2", "h2") and m > cfg.block_m):
        return None
    return cfg._replace(block_k=bk)


def quant_linear(layer, x: torch.Tensor, gated: str | None = None) -> torch.Tensor | None:
    """y = layer(x) through a GPU kernel, or None (the caller runs its fallback). Graph-safe: no host syncs.
    gated "silu" / "gelu_tanh": act(gate) * up of a [gate | up] layer's output in the same kernel, where the FP8
    half2 GEMV runs this call without split-K; None otherwise (the caller runs the layer, then the activation)."""
    kind = KINDS.get(layer.format.quant_algo)
    if not (ENABLED and kind and x.is_cuda and x.dtype in (torch.bfloat16, torch.float16)):
        return None
    k = x.shape[-1]
    m = x.numel() // k if k else 0
    tg = getattr(layer, "tinygemm", None)
    if tg is not None and 0 < m <= tinygemm.MAX_M and not gated:
        return tinygemm.linear(x, *tg, layer.kernel_pqs, layer.bias, layer.out_features)
    cfg = lookup(kind, layer.out_features, k, m) if m else None
    if kind == "w4a8" and layer.fp8_weight is None:
        return None
    if gated and not (cfg is not None and cfg.kind == "h2" and cfg.split_k == 1 and cfg.block_n % 2 == 0
                      and kind in FP8_WEIGHT and layer.out_features % 2 == 0):
        return None
    return None if cfg is None else run(kind, layer, x, cfg, gated)


def run(kind: str, layer, x: torch.Tensor, cfg: Config, gated: str | None = None) -> torch.Tensor:
    """Launch `kind`'s kernel with `cfg` whatever the table says (tests, benchmarks); `gated`: FP8 "h2" only."""
    bias = layer.bias
    pqs = layer.kernel_pqs    # None: the format has none, or it is all ones (QuantLinear.finalize_)
    if cfg.kind == "dq":
        from ember.quantization.kernels import dequant
        return dequant.linear(kind, x, layer, pqs, bias)
    if kind in ("int4", "nvfp4"):
        from ember.quantization.kernels import w4_gemv, w4a16
        if cfg.kind == "h2":
            if kind == "int4":
                return w4_gemv.int4_gemv(x, layer.weight, layer.weight_scale, pqs, bias, cfg)
            return w4_gemv.nvfp4_gemv(x, layer.weight, layer.weight_scale, layer.weight_scale_2, pqs, bias, cfg)
        if kind == "int4":
            return w4a16.int4_linear(x, layer.weight, layer.weight_scale, pqs, bias, cfg)       # "ew2" / "dot"
        return w4a16.nvfp4_linear(x, layer.weight, layer.weight_scale, layer.weight_scale_2, pqs, bias, cfg)
    if kind == "w4a8":   # its staged FP8 weight (w4a8_fp8.py) stands in for the checkpoint tensors
        weight, weight_scale, input_scale = layer.fp8_weight
    else:
        weight, weight_scale = layer.weight, layer.weight_scale
        input_scale = getattr(layer, "input_scale", None) if "input_scale" in layer.format.specs else None
    if cfg.kind == "h2":
        from ember.quantization.kernels.w8_gemv import fp8_gemv
        return fp8_gemv(x, weight, weight_scale, kind == "fp8_rowwise", _W8_ACT[kind], input_scale, pqs, bias, cfg,
                        gated)
    if cfg.kind == "mm":
        from ember.quantization.kernels import act_quant
        if kind == "int8_sq":
            return act_quant.int8_int_mm(x, weight, weight_scale, input_scale, pqs, bias)
        if kind == "fp8_rowwise":
            return act_quant.fp8_rowwise_scaled_mm(x, weight, weight_scale, bias)
        return act_quant.fp8_scaled_mm(x, weight, weight_scale, input_scale, bias, pqs)
    from ember.quantization.kernels.w8 import w8_linear
    per_row = kind not in ("fp8", "w4a8")
    return w8_linear(x, weight, weight_scale, per_row, _W8_ACT[kind], input_scale, pqs, bias, cfg)

