"""Linear layers with `weight_loader`s, so checkpoint tensors land in fused (packed) parameters by shard."""

from __future__ import annotations

import torch
from torch import nn

from ember.layers.gemv import gated_linear, lookup_gated
from ember.layers.gemv import linear as gemv_linear


def _check_shape(param: nn.Parameter, loaded: torch.Tensor, what: str) -> None:
    if tuple(param.shape) != tuple(loaded.shape):
        raise ValueError(f"shape mismatch for {what}: expected {tuple(param.shape)}, got {tuple(loaded.shape)}")


def default_weight_loader(param: nn.Parameter, loaded: torch.Tensor, shard_id: str | int | None = None) -> None:
    """Copy a whole tensor into `param` (any dtype -> the parameter's dtype)."""
    _check_shape(param, loaded, "parameter")
    param.data.copy_(loaded)


class Linear(nn.Linear):
    """y = x W^T (+ b); the plain case. Quantization recipes swap this module, model files never special-case it."""

    def __init__(self, in_features: int, out_features: int, bias: bool = False) -> None:
        super().__init__(in_features, out_features, bias=bias)
        for p in self.parameters():
            p.weight_loader = self.weight_loader

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard_id: str | int | None = None) -> None:
        default_weight_loader(param, loaded)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """F.linear, except CUDA bf16/fp16 decode shapes where the Triton skinny GEMM measured faster (gemv.TABLE)."""
        return gemv_linear(x, self.weight, self.bias)

    def forward_act(self, x: torch.Tensor, act: nn.Module) -> torch.Tensor:
        """act(self(x)) for a gated `act` over this layer's [gate | up] output (QuantLinear fuses the two)."""
        return act(self(x))

    def forward_gated(self, h: torch.Tensor, act: nn.Module) -> torch.Tensor:
        """self(act(h)) for a gated activation `act` over h [T, 2K] = [gate | up]; at decode shapes in
        gemv.GATED_TABLE one kernel computes act(gate) * up while it reads the weight (same rounding)."""
        cfg = lookup_gated(h, self.weight) if getattr(act, "kind", None) else None
        if cfg is None:
            return self(act(h))
        return gated_linear(h, self.weight, self.bias, act.kind, cfg)


class MergedLinear(Linear):
    """Several linears sharing one input, fused along the output dim; shard i of `output_sizes` is loaded by index."""

    def __init__(self, in_features: int, output_sizes: list[int], bias: bool = False) -> None:
        super().__init__(in_features, sum(output_sizes), bias=bias)
        self.output_sizes = list(output_sizes)

    def shard_range(self, shard_id: str | int) -> tuple[int, int]:
        idx = int(shard_id)
        return sum(self.output_sizes[:idx]), self.output_sizes[idx]

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor, shard_id: str | int | None = None) -> None:
        if shard_id is None:  # already fused in the checkpoint (Phi-3 stores qkv_proj / gate_up_proj)
            default_weight_loader(param, loaded)
            return
        start, size = self.shard_range(shard_id)
        target = param.data.narrow(0, start, size)
        if tuple(target.shape) != tuple(loaded.shape):
            raise ValueError(f"shape mismatch for shard {shard_id!r}: expected {tuple(target.shape)}, "
                             f"got {tuple(loaded.shape)}")
        target.copy_(loaded)


class QKVLinear(MergedLinear):
    """q, k and v projections in one matmul: out = [Hq*D | Hkv*D | Hkv*D]; shards are "q", "k", "v"."""

    def __init__(self, hidden_size: int, head_dim: int, num_heads: int, num_kv_heads: int, bias: bool = False) -> None:
        self.q_size, self.kv_size = num_heads * head_dim, num_kv_heads * head_dim
        super().__init__(hidden_size, [self.q_size, self.kv_size, self.kv_size], bias=bias)

    def shard_range(self, shard_id: str | int) -> tuple[int, int]:
        return super().shard_range({"q": 0, "k": 1, "v": 2}[shard_id] if isinstance(shard_id, str) else shard_id)

    def split(self, qkv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[T, (Hq + 2 Hkv) * D] -> q [T, Hq*D], k [T, Hkv*D], v [T, Hkv*D]."""
        return qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
