"""Storage formats of quantized linears (keyed by ModelOpt's `quant_algo`): tensor specs, dequantize, act quant.

A format says how one linear's tensors are stored in the unified HF checkpoint and how the CPU/GPU fallback
runs it (dequantize the weight, fake-quantize the activation, matmul). Recipes *produce* a format; the loader
*reads* one. Shard modes say how a fused module (q/k/v, gate/up) holds each tensor:
  rows   -- concatenated along dim 0 (packed int4 stores two output rows per byte: `rows2`)
  scalar -- one value per shard: the fused module holds [num_shards] and `finalize` unifies them
  shared -- one tensor over the input dim, identical for every shard (pre_quant_scale)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ember.quantization.numerics import fp8, int4, int8, nvfp4, w4a8


@dataclass(frozen=True)
class Spec:
    dtype: torch.dtype
    mode: str                 # rows | rows2 | scalar | shared
    cols: str = "k"           # k | k/2 | k/group | none
    optional: bool = False    # absent in the checkpoint -> filled with ones (ModelOpt folds some pre_quant_scale)


class Format:
    """Base: subclasses set `quant_algo`, `specs`, and implement `weight` (+ `act` for activation quantization)."""

    quant_algo: str = ""
    specs: dict[str, Spec] = {}
    weight_bits: int = 16

    def __init__(self, group_size: int | None = None) -> None:
        self.group_size = group_size

    def shape(self, name: str, n: int, k: int, num_shards: int) -> tuple[int, ...]:
        spec = self.specs[name]
        if spec.mode == "scalar":
            return (num_shards,)
        if spec.mode == "shared":
            return (k,)
        rows = n // 2 if spec.mode == "rows2" else n
        cols = {"k": k, "k/2": k // 2, "k/group": k // (self.group_size or 1), "none": None}[spec.cols]
        return (rows,) if cols is None else (rows, cols)

    def weight(self, t: dict[str, torch.Tensor], shard_rows: list[int]) -> torch.Tensor:
        """Dequantized weight [N, K] fp32."""
        raise NotImplementedError

    def act(self, x: torch.Tensor, t: dict[str, torch.Tensor]) -> torch.Tensor:
        """The activation as the quantized kernel sees it (pre_quant_scale, fake quantization)."""
        if "pre_quant_scale" in t:
            x = x * t["pre_quant_scale"].to(x.dtype)
        return x

    def finalize(self, t: dict[str, torch.Tensor], shard_rows: list[int]) -> None:
        """Per-shard scalars -> one (the max) as vLLM / TRT-LLM do for fused layers; requantize what depends."""
        if "input_scale" in t:
            t["input_scale"].fill_(t["input_scale"].max())


def _per_row(scalars: torch.Tensor, shard_rows: list[int]) -> torch.Tensor:
    """[num_shards] -> [N, 1]."""
    return scalars.float().repeat_interleave(torch.tensor(shard_rows, device=scalars.device))[:, None]


def _fake_fp8(x: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    return (fp8.cast(x, scale).float() * scale).to(x.dtype)


class FP8(Format):
    """W8A8 FP8 E4M3, per-tensor weight scale, static per-tensor activation scale."""

    quant_algo, weight_bits = "FP8", 8
    specs = {"weight": Spec(torch.float8_e4m3fn, "rows"), "weight_scale": Spec(torch.float32, "scalar"),
             "input_scale": Spec(torch.float32, "scalar")}

    def weight(self, t, shard_rows):
        return t["weight"].float() * _per_row(t["weight_scale"], shard_rows)

    def act(self, x, t):
        return _fake_fp8(x, t["input_scale"].max().float())

    def finalize(self, t, shard_rows):
        # One weight scale per fused module (what `_scaled_mm` needs): requantize each shard to the max (vLLM's
        # `requantize_with_max_scale`); exact when the shards already share a scale, as ember's own exports do.
        s = t["weight_scale"]
        if bool((s != s.max()).any()):
            w = self.weight(t, shard_rows)
            t["weight"].copy_(fp8.cast(w, s.max()))
            s.fill_(s.max())
        super().finalize(t, shard_rows)


class FP8RowWise(Format):
    """FP8 per-output-channel weight scales, dynamic per-token activation scales (ModelOpt `fp8_pc_pt`)."""

    quant_algo, weight_bits = "FP8_PER_CHANNEL_PER_TOKEN", 8
    specs = {"weight": Spec(torch.float8_e4m3fn, "rows"), "weight_scale": Spec(torch.float32, "rows", "none")}

    def weight(self, t, shard_rows):
        return fp8.dequantize(t["weight"], t["weight_scale"])

    def act(self, x, t):
        scale = (x.float().abs().amax(-1, keepdim=True) / fp8.E4M3_MAX).clamp(min=1e-12)  # [T, 1] per token
        return _fake_fp8(x, scale)


class W8A16(Format):
    """INT8 per-channel weights, activations unquantized (ModelOpt `int8_wo`)."""

    quant_algo, weight_bits = "W8A16", 8
    specs = {"weight": Spec(torch.int8, "rows"), "weight_scale": Spec(torch.float32, "rows", "none")}

    def weight(self, t, shard_rows):
        return int8.dequantize(t["weight"], t["weight_scale"])


class W8A8SQ(W8A16):
    """SmoothQuant INT8: per-channel weights, static per-tensor INT8 activations after `pre_quant_scale`."""

    quant_algo = "W8A8_SQ_PER_CHANNEL"
    specs = {**W8A16.specs, "input_scale": Spec(torch.float32, "scalar"),
             "pre_quant_scale": Spec(torch.float32, "shared", optional=True)}

    def act(self, x, t):
        x = super().act(x, t)
        s = t["input_scale"].max().float()
        return ((x.float() / s).round().clamp(-128, 127) * s).to(x.dtype)


class W4A16AWQ(Format):
    """INT4 group-wise weights (packed two rows a byte) + AWQ `pre_quant_scale`; activations unquantized."""

    quant_algo, weight_bits = "W4A16_AWQ", 4
    specs = {"weight": Spec(torch.uint8, "rows2"), "weight_scale": Spec(torch.float32, "rows", "k/group"),
             "pre_quant_scale": Spec(torch.float32, "shared", optional=True)}

    def weight(self, t, shard_rows):
        return int4.dequantize(t["weight"], t["weight_scale"])


class W4A8AWQ(Format):
    """INT4 group-wise weights run as FP8 (ModelOpt `w4a8_awq`): `weight` / `weight_scale` as W4A16_AWQ, plus the FP8
    per-tensor `weight_scale_2` the INT4-dequantized weight is re-quantized with; static FP8 activations after
    `pre_quant_scale`. Not a W4A16AWQ subclass: a W4A16 kernel must not pick it up."""

    quant_algo, weight_bits = "W4A8_AWQ", 4
    specs = {"weight": Spec(torch.uint8, "rows2"), "weight_scale": Spec(torch.float32, "rows", "k/group"),
             "weight_scale_2": Spec(torch.float32, "scalar"), "input_scale": Spec(torch.float32, "scalar"),
             "pre_quant_scale": Spec(torch.float32, "shared", optional=True)}

    def weight(self, t, shard_rows):
        w_int4 = int4.dequantize(t["weight"], t["weight_scale"])                      # [N, K]
        return w4a8.fp8_stage(w_int4, _per_row(t["weight_scale_2"], shard_rows))

    def act(self, x, t):
        return _fake_fp8(super().act(x, t), t["input_scale"].max().float())

    def finalize(self, t, shard_rows):
        # One FP8 weight scale per fused module, as TensorRT-LLM requires (and ModelOpt's export already gives the
        # shards): the INT4 codes and group scales stay, only the FP8 re-rounding of w / weight_scale_2 moves.
        t["weight_scale_2"].fill_(t["weight_scale_2"].max())
        super().finalize(t, shard_rows)


class NVFP4(Format):
    """W4A4 NVFP4: E2M1 weights, E4M3 block-16 scales, fp32 global scale; activations fake-quantized alike."""

    quant_algo, weight_bits = "NVFP4", 4
    specs = {"weight": Spec(torch.uint8, "rows", "k/2"), "weight_scale": Spec(torch.float8_e4m3fn, "rows", "k/group"),
             "weight_scale_2": Spec(torch.float32, "scalar"), "input_scale": Spec(torch.float32, "scalar")}

    def weight(self, t, shard_rows):
        values = nvfp4.dequantize(t["weight"], t["weight_scale"], torch.ones(()))
        return values * _per_row(t["weight_scale_2"], shard_rows)

    def act(self, x, t):
        x = super().act(x, t)
        shape = x.shape
        x2 = x.reshape(-1, shape[-1]).float()
        s2 = t["input_scale"].max().float()
        packed, scale, _ = nvfp4.quantize(x2, self.group_size or 16, scale_2=s2)
        return nvfp4.dequantize(packed, scale, s2).reshape(shape).to(x.dtype)

    def finalize(self, t, shard_rows):
        s2 = t["weight_scale_2"]
        if bool((s2 != s2.max()).any()):  # fold each shard's global scale into its block scales (lossy re-cast)
            ratio = _per_row(s2 / s2.max(), shard_rows)
            t["weight_scale"].copy_((t["weight_scale"].float() * ratio).to(torch.float8_e4m3fn))
            s2.fill_(s2.max())
        super().finalize(t, shard_rows)


class NVFP4AWQ(NVFP4):
    quant_algo = "NVFP4_AWQ"
    specs = {**NVFP4.specs, "pre_quant_scale": Spec(torch.float32, "shared", optional=True)}


FORMATS: dict[str, type[Format]] = {f.quant_algo: f for f in (FP8, FP8RowWise, W8A16, W8A8SQ, W4A16AWQ, W4A8AWQ,
                                                              NVFP4, NVFP4AWQ)}


def get_format(quant_algo: str, group_size: int | None = None) -> Format:
    """The format of a checkpoint's `quant_algo`; a clear error for ones ember cannot run yet."""
    if quant_algo not in FORMATS:
        raise ValueError(f"quantized checkpoint format {quant_algo!r} is not supported by ember yet; supported: "
                         f"{', '.join(sorted(FORMATS))}")
    return FORMATS[quant_algo](group_size)
