"""QuantLinear: a linear whose weight is stored in a quantized `Format`; loads fused q/k/v and gate/up by shard.

Runs everywhere by dequantize-then-matmul (the activation fake-quantized as the real kernel would see it). On CUDA
(bf16/fp16 activations) the GPU kernels of ember.quantization.kernels run instead, chosen per format and M by
`kernels.dispatch`: 4-bit weights are dequantized in registers; FP8 per-tensor is one fused act-quant kernel +
`torch._scaled_mm` at every M; INT8 and per-token FP8 quantize the activation in registers (SmoothQuant uses
`torch._int_mm` above M = 16). EMBER_QUANT_KERNELS=0 turns them off (FP8 per-tensor then still uses
`torch._scaled_mm`, with separate quantize / pad launches).

One semantic difference: NVFP4 checkpoints are W4A4, and the CPU fallback fake-quantizes the activation to NVFP4
as the checkpoint intends; on CUDA they run weight-only (W4A16: the activation stays bf16), since Hopper has no
FP4 tensor cores (vLLM's FP4-Marlin does the same). The GPU result is therefore slightly more accurate than the
fallback's, not bit-equal to it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ember.layers.gemv import GATED
from ember.quantization.formats import FP8, Format
from ember.quantization.kernels import tinygemm, w4a8_fp8
from ember.quantization.kernels.dispatch import quant_linear


class QuantLinear(nn.Module):
    """Drop-in for ember's Linear / MergedLinear / QKVLinear: same `output_sizes`, `shard_range`, `split`."""

    def __init__(self, fmt: Format, in_features: int, output_sizes: list[int], bias: bool,
                 dtype: torch.dtype, device: torch.device | str, shard_names: dict | None = None) -> None:
        super().__init__()
        self.format, self.in_features, self.compute_dtype = fmt, in_features, dtype
        self.output_sizes = list(output_sizes)
        self.out_features = sum(output_sizes)
        self.shard_names = shard_names or {}  # "q" -> 0 ...: shard ids as the model's packed mapping names them
        n, k = self.out_features, in_features
        for name, spec in fmt.specs.items():
            shape = fmt.shape(name, n, k, len(output_sizes))
            init = torch.ones if spec.optional or spec.mode == "scalar" else torch.zeros
            p = nn.Parameter(init(shape, dtype=spec.dtype, device=device) if spec.dtype.is_floating_point
                             and spec.dtype not in (torch.float8_e4m3fn,) else
                             torch.zeros(shape, dtype=spec.dtype, device=device), requires_grad=False)
            p.weight_loader, p.tensor_name = self.weight_loader, name
            self.register_parameter(name, p)
        self.bias = None
        if bias:
            self.bias = nn.Parameter(torch.zeros(n, dtype=dtype, device=device), requires_grad=False)
            self.bias.weight_loader, self.bias.tensor_name = self.weight_loader, "bias"
        self._loaded_shared: set[str] = set()
        self._dense: torch.Tensor | None = None
        # pre_quant_scale as the GPU kernels apply it (finalize_: None when all ones, else in the compute dtype,
        # which is what the reference `x * pqs.to(x.dtype)` multiplies by); until then the raw parameter
        self.register_buffer("kernel_pqs", getattr(self, "pre_quant_scale", None), persistent=False)
        self.tinygemm = self.fp8_weight = None   # copies of the weight for GPU kernels (finalize_)
        # (their device, names) of checkpoint tensors finalize_ moved to host memory (`_to_host_`)
        self._on_host: tuple[torch.device, tuple[str, ...]] | None = None

    # -- loading -------------------------------------------------------------------------------------------------
    def shard_index(self, shard_id: str | int) -> int:
        return self.shard_names.get(shard_id, shard_id) if isinstance(shard_id, str) else int(shard_id)

    def shard_range(self, shard_id: str | int) -> tuple[int, int]:
        idx = self.shard_index(shard_id)
        return sum(self.output_sizes[:idx]), self.output_sizes[idx]

    def tensors(self) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name).data for name in self.format.specs}

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard_id: str | int | None = None) -> None:
        name = param.tensor_name
        mode = "rows" if name == "bias" else self.format.specs[name].mode
        if mode == "shared":
            if name in self._loaded_shared and not torch.equal(param.data, loaded.to(param.dtype)):
                raise ValueError(f"{name} differs between the fused shards; ember needs one {name} per fused "
                                 "module (ModelOpt's export resmooths shared-input layers to make them equal)")
            self._loaded_shared.add(name)
            target = param.data
        elif mode == "scalar":
            target = param.data if shard_id is None else param.data[self.shard_index(shard_id)]
            if shard_id is None and loaded.numel() == 1:
                target, loaded = param.data, loaded.reshape(1).expand_as(param.data)
            loaded = loaded.reshape(target.shape)
        elif shard_id is None:
            target = param.data
        else:
            start, size = self.shard_range(shard_id)
            if mode == "rows2":
                start, size = start // 2, size // 2
            target = param.data.narrow(0, start, size)
        if tuple(target.shape) != tuple(loaded.shape):
            raise ValueError(f"shape mismatch for {name} shard {shard_id!r}: expected {tuple(target.shape)}, "
                             f"got {tuple(loaded.shape)}")
        # why: ModelOpt writes pre_quant_scale in the model dtype (bf16), ember in fp32: both are the same scale
        if loaded.dtype != param.dtype and name != "bias" and not (mode == "shared" and loaded.dtype.is_floating_point):
            raise ValueError(f"{name} has dtype {loaded.dtype}, the {self.format.quant_algo} format stores "
                             f"{param.dtype}")
        target.copy_(loaded)

    def finalize_(self) -> None:
        """After loading: unify per-shard scales (see Format.finalize), check them, cache the dense weight on CPU,
        make the GPU kernels' copies of the weight. May run again (e.g. after a scale changed)."""
        if self._on_host is not None:                        # an earlier finalize_ moved these off the device
            device, names = self._on_host
            for name in names:
                getattr(self, name).data = getattr(self, name).data.to(device)
            self._on_host = None
        t = self.tensors()
        self.format.finalize(t, self.output_sizes)
        for name, value in t.items():
            if value.dtype.is_floating_point and value.dtype != torch.float8_e4m3fn and not torch.isfinite(value).all():
                raise ValueError(f"{name} holds NaN or inf")
        # why: on CPU the fallback would otherwise dequantize every weight on every forward (~10x slower ppl runs)
        self._dense = self.dense_weight() if self.weight.device.type == "cpu" else None
        pqs = t.get("pre_quant_scale")
        # why: ones (ModelOpt folds q/k/v's into the norm; random bench models) cost the kernels a load and a
        # multiply per activation element per program; a bf16 copy halves what is read
        self.kernel_pqs = None if pqs is None or bool((pqs == 1).all()) else pqs.to(self.compute_dtype)
        self.tinygemm = self.fp8_weight = None
        if tinygemm.supports(self):   # INT4-AWQ at decode sizes: aten's int4 kernel, repacked once here
            self.tinygemm = tinygemm.prepare(self)
        elif self.weight.is_cuda and self.format.quant_algo == "W4A8_AWQ":
            self.fp8_weight = w4a8_fp8.prepare(self)  # its FP8 weight, for FP8 tensor cores (w4a8_fp8.py)
            if w4a8_fp8.serves_every_call(self):
                self._to_host_("weight", "weight_scale")

    def _to_host_(self, *names: str) -> None:
        """Move checkpoint tensors that the GPU kernels never read to host memory (export and the fallback still
        find them; the fallback copies them back per call)."""
        self._on_host = (getattr(self, names[0]).device, names)
        for name in names:
            param = getattr(self, name)
            param.data = param.data.cpu()

    def dense_weight(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The dequantized weight [N, K]."""
        w = self.format.weight(self.tensors(), self.output_sizes)
        return w.to(dtype or self.compute_dtype)

    # -- forward -------------------------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [T, K] -> [T, N]
        if x.is_cuda:
            y = quant_linear(self, x)
            if y is not None:
                return y
            if type(self.format) is FP8:
                return self._fp8_scaled_mm(x)
        t = self.tensors()
        if self.weight.device != x.device:   # checkpoint tensors in host memory (finalize_): copied for this call
            t = {name: value.to(x.device) for name, value in t.items()}
        xq = self.format.act(x, t)
        w = self._dense if self._dense is not None else self.format.weight(t, self.output_sizes)
        return F.linear(xq, w.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))

    def forward_act(self, x: torch.Tensor, act: nn.Module) -> torch.Tensor:
        """act(self(x)) for a gated `act` over this [gate | up] layer's output [T, 2I] -> [T, I]; one kernel where
        the FP8 decode GEMV runs the call (no act-and-mul launch, same rounding)."""
        kind = getattr(act, "kind", None)
        pair = len(self.output_sizes) == 2 and self.output_sizes[0] == self.output_sizes[1]
        y = quant_linear(self, x, gated=kind) if kind and pair and GATED else None   # None off the GPU too
        return y if y is not None else act(self(x))

    def _fp8_scaled_mm(self, x: torch.Tensor) -> torch.Tensor:
        # why: FP8 tensor cores (1425 vs 787 TFLOP/s bf16 on H100, 1.83x on a decode GEMV, gpu.md)
        shape = x.shape
        x2 = x.reshape(-1, shape[-1])
        s_in, s_w = self.input_scale[:1].float(), self.weight_scale[:1].float()
        xq = (x2.float() / s_in).clamp(-448.0, 448.0).to(torch.float8_e4m3fn)
        m = xq.shape[0]
        pad = (-m) % 16  # _scaled_mm wants M a multiple of 16
        if pad:
            xq = torch.cat([xq, xq.new_zeros(pad, xq.shape[1])])
        out_dtype = x.dtype if x.dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
        y = torch._scaled_mm(xq, self.weight.t(), scale_a=s_in.reshape(()), scale_b=s_w.reshape(()),
                             out_dtype=out_dtype)[:m].to(x.dtype)
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y.reshape(*shape[:-1], -1)

    def split(self, y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return y.split(self.output_sizes, dim=-1)

    def extra_repr(self) -> str:
        return f"{self.format.quant_algo}, in={self.in_features}, out={self.output_sizes}"
