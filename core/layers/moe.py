"""Sparse mixture-of-experts block: softmax/top-k router and stacked expert weights.

CUDA bf16/fp16 runs the fused Triton path (ember.layers.moe_kernels: no host sync, CUDA-graph safe); CPU, fp32 and
EMBER_FUSED_MOE=0 run the reference per-expert loop.
"""

from __future__ import annotations

import os
from types import ModuleType

import torch
from torch import nn

from ember.layers.activation import GeluTanhAndMul, get_act_and_mul
from ember.layers.linear import Linear

FUSED = os.environ.get("EMBER_FUSED_MOE", "1") != "0"
_kernels: ModuleType | None = None


def fused_moe_kernels(x: torch.Tensor) -> ModuleType | None:
    """ember.layers.moe_kernels for a CUDA bf16/fp16 tensor when enabled, else None (the reference loop runs)."""
    global _kernels
    if not (FUSED and x.is_cuda and x.dtype in (torch.bfloat16, torch.float16)):
        return None
    if _kernels is None:
        from ember.layers import moe_kernels as module   # imports triton: only ever on a CUDA call
        _kernels = module
    return _kernels


class FusedExperts(nn.Module):
    """E gated MLPs as stacked weights: gate_up_proj [E, 2I, H] (gate rows first), down_proj [E, H, I].

    Checkpoint tensors arrive per expert (`shard_id = (expert, "gate"|"up"|"down")`) or already stacked
    (`shard_id = None`, the transformers 5 in-memory layout).
    """

    def __init__(self, num_experts: int, hidden_size: int, intermediate_size: int, act: str) -> None:
        super().__init__()
        self.num_experts, self.intermediate_size = num_experts, intermediate_size
        self.gate_up_proj = nn.Parameter(torch.empty(num_experts, 2 * intermediate_size, hidden_size))
        self.down_proj = nn.Parameter(torch.empty(num_experts, hidden_size, intermediate_size))
        self.gate_up_proj.weight_loader = self.weight_loader
        self.down_proj.weight_loader = self.weight_loader
        self.act = get_act_and_mul(act)
        self.gelu = isinstance(self.act, GeluTanhAndMul)

    def weight_loader(self, param: nn.Parameter, loaded: torch.Tensor,
                      shard_id: tuple[int, str] | None = None) -> None:
        if shard_id is None:
            target = param.data
        else:
            expert, part = shard_id
            target = param.data[expert]
            if part in ("gate", "up"):
                target = target.narrow(0, 0 if part == "gate" else self.intermediate_size, self.intermediate_size)
        if tuple(target.shape) != tuple(loaded.shape):
            raise ValueError(f"shape mismatch for experts shard {shard_id!r}: expected {tuple(target.shape)}, "
                             f"got {tuple(loaded.shape)}")
        target.copy_(loaded)

    def forward(self, x: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor) -> torch.Tensor:
        """x [T, H], topk_ids / topk_weights [T, K] -> [T, H]."""
        kernels = fused_moe_kernels(x)
        if kernels is not None and self.gate_up_proj.dtype == x.dtype:
            return kernels.fused_experts(x, self.gate_up_proj, self.down_proj, topk_ids, topk_weights, self.gelu)
        return self.reference(x, topk_ids, topk_weights)

    def graph_safe(self, device: torch.device, dtype: torch.dtype) -> bool:
        """Whether forward can run inside a CUDA graph there: only the fused path never syncs with the host."""
        return (FUSED and device.type == "cuda" and dtype in (torch.bfloat16, torch.float16)
                and self.gate_up_proj.dtype == dtype)

    def reference(self, x: torch.Tensor, topk_ids: torch.Tensor, topk_weights: torch.Tensor) -> torch.Tensor:
        """The per-expert loop: readable, and the yardstick for the fused path (it syncs with the host)."""
        if x.is_cuda and torch.cuda.is_current_stream_capturing():
            raise RuntimeError("the reference MoE loop syncs with the host and cannot be captured in a CUDA graph: "
                               "use the fused path (CUDA bf16/fp16, EMBER_FUSED_MOE unset) or cuda_graphs=False")
        out = torch.zeros_like(x)
        for expert in torch.unique(topk_ids).tolist():
            token_idx, slot = torch.where(topk_ids == expert)
            h = self.act(x[token_idx] @ self.gate_up_proj[expert].t())                 # [n, I]
            h = (h @ self.down_proj[expert].t()) * topk_weights[token_idx, slot, None]  # [n, H]
            out.index_add_(0, token_idx, h.to(out.dtype))
        return out


class SparseMoeBlock(nn.Module):
    """Router `gate` [E, H] -> softmax (fp32) -> top-k (renormalised if `norm_topk_prob`) -> weighted experts."""

    def __init__(self, hidden_size: int, intermediate_size: int, num_experts: int, top_k: int,
                 norm_topk_prob: bool, act: str = "silu") -> None:
        super().__init__()
        self.top_k, self.norm_topk_prob = top_k, norm_topk_prob
        self.gate = Linear(hidden_size, num_experts)
        self.experts = FusedExperts(num_experts, hidden_size, intermediate_size, act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.gate(x)                                                          # [T, E]
        kernels = fused_moe_kernels(x)
        if kernels is not None:
            weights, ids = kernels.topk_softmax(logits, self.top_k, self.norm_topk_prob, x.dtype)
            return self.experts(x, ids, weights)
        probs = torch.softmax(logits, dim=-1, dtype=torch.float)
        weights, ids = torch.topk(probs, self.top_k, dim=-1)                           # [T, K]
        if self.norm_topk_prob:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return self.experts(x, ids, weights.to(x.dtype))


def map_expert_name(name: str, parts: dict[str, str]) -> tuple[str, tuple[int, str]] | None:
    """Per-expert checkpoint name -> (stacked parameter name, (expert, "gate"|"up"|"down")), else None.

    `parts` maps the checkpoint's projection names to roles, e.g. {"w1": "gate", "w3": "up", "w2": "down"}:
    `...experts.3.w1.weight` -> (`...experts.gate_up_proj`, (3, "gate")).
    """
    head, sep, tail = name.partition(".experts.")
    if not sep:
        return None
    expert, _, rest = tail.partition(".")
    proj, _, suffix = rest.partition(".")
    if not expert.isdigit() or proj not in parts or suffix != "weight":
        return None
    role = parts[proj]
    return f"{head}.experts.{'down_proj' if role == 'down' else 'gate_up_proj'}", (int(expert), role)
