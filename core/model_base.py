"""CausalLM: the base every architecture plugin subclasses (varlen forward, logits, generic weight loading)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import torch
from torch import nn
from transformers import PretrainedConfig

from ember.attention.metadata import AttentionMetadata
from ember.layers.linear import default_weight_loader
from ember.layers.moe import map_expert_name
from ember.layers.rotary import RotaryEmbedding
from ember.loader.weights import CheckpointError


class CausalLM(nn.Module):
    """A decoder-only LM over a flattened varlen batch; subclasses build `self.model` (with `embed_tokens`) and
    `self.lm_head` using Hugging Face attribute names, so checkpoint names map onto parameters as they are.

    `packed_modules_mapping` sends checkpoint module names into fused parameters: {"q_proj": ("qkv_proj", "q")}
    loads `...q_proj.weight` into `...qkv_proj.weight` through that parameter's `weight_loader(param, t, "q")`.
    `tiny_config` holds kwargs for a tiny random `AutoConfig.for_model(**tiny_config)`; tests iterate it.
    """

    packed_modules_mapping: ClassVar[dict[str, tuple[str, str | int]]] = {}
    # per-expert checkpoint projection -> role in the stacked expert weights: {"w1": "gate", "w3": "up", "w2": "down"}
    expert_parts: ClassVar[dict[str, str]] = {}
    tiny_config: ClassVar[dict] = {}
    # checkpoint tensors that are safe to drop: derived buffers some exporters save
    ignored_checkpoint_suffixes: ClassVar[tuple[str, ...]] = ("rotary_emb.inv_freq", "rotary_emb.cos_cached",
                                                              "rotary_emb.sin_cached")

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        self.config = config

    @property
    def tie_word_embeddings(self) -> bool:
        return bool(getattr(self.config, "tie_word_embeddings", False))

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        """input_ids [T], positions [T] -> hidden [T, H]."""
        return self.model(input_ids, positions, meta)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden [N, H] -> logits [N, V] in float32."""
        return self.lm_head(hidden).float()

    # -- materialisation ---------------------------------------------------------------------------------------
    def tie_weights_(self) -> None:
        """Share lm_head with embed_tokens when the config ties them (must be redone after `to_empty`)."""
        if self.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight

    def init_buffers_(self) -> None:
        """Recompute derived buffers (rotary cos/sin) after the parameters left the meta device."""
        for module in self.modules():
            if isinstance(module, RotaryEmbedding):
                module.init_buffers()

    def materialize_(self, device: torch.device | str) -> CausalLM:
        """Meta-built model -> uninitialised storage on `device`, ties, buffers and `weight_loader`s restored."""
        attrs = {name: dict(vars(p)) for name, p in self.named_parameters()}  # to_empty makes new Parameters
        self.to_empty(device=device)
        for name, p in self.named_parameters():
            vars(p).update(attrs.get(name, {}))
        self.tie_weights_()
        self.init_buffers_()
        return self

    # -- weight loading ----------------------------------------------------------------------------------------
    def map_checkpoint_name(self, name: str, params: dict[str, nn.Parameter]) -> tuple[str, object] | None:
        """Checkpoint tensor name -> (parameter name, shard_id), or None when nothing takes it."""
        if self.expert_parts:
            mapped = map_expert_name(name, self.expert_parts)
            if mapped is not None and mapped[0] in params:
                return mapped
        for ckpt_module, (packed, shard_id) in self.packed_modules_mapping.items():
            needle = f".{ckpt_module}."
            if needle in name:
                target = name.replace(needle, f".{packed}.")
                if target in params:
                    return target, shard_id
        return (name, None) if name in params else None

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        """Load every checkpoint tensor; raise CheckpointError on unknown, missing or mis-shaped tensors."""
        params = dict(self.named_parameters())  # tied lm_head.weight is deduplicated away
        written = dict.fromkeys(params, 0)      # elements written per parameter, to catch missing shards
        unexpected: list[str] = []
        for name, tensor in weights:
            if name.endswith(self.ignored_checkpoint_suffixes):
                continue
            if self.tie_word_embeddings and name == "lm_head.weight":
                continue
            mapped = self.map_checkpoint_name(name, params)
            if mapped is None:
                unexpected.append(name)
                continue
            target, shard_id = mapped
            param = params[target]
            loader = getattr(param, "weight_loader", default_weight_loader)
            try:
                with torch.no_grad():
                    loader(param, tensor, shard_id)
            except ValueError as exc:
                raise CheckpointError(f"cannot load into {target}: {exc}", tensor=name) from exc
            written[target] += tensor.numel()
        if unexpected:
            shown = ", ".join(unexpected[:20]) + (f" ... ({len(unexpected)} in all)" if len(unexpected) > 20 else "")
            raise CheckpointError(f"{type(self).__name__}: checkpoint tensors that map to no parameter: {shown}")
        missing = [n for n, count in written.items() if count < params[n].numel()]
        if missing:
            shown = ", ".join(missing[:20]) + (f" ... ({len(missing)} in all)" if len(missing) > 20 else "")
            raise CheckpointError(f"{type(self).__name__}: parameters missing from the checkpoint: {shown}")
        return set(params)
