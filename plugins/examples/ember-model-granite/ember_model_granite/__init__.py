"""Granite for ember: Llama plus four scalars (embedding, residual and attention multipliers, logits scaling)."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig

from ember.attention.metadata import AttentionMetadata
from ember.layers.rotary import RotaryEmbedding
from ember.models.llama import LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM
from ember.plugins import hookimpl


@hookimpl
def ember_register_models(register) -> None:
    # Lazy target: ember imports this module (and torch) only when a Granite checkpoint is loaded.
    register("GraniteForCausalLM", "ember_model_granite:GraniteForCausalLM",
             description="IBM Granite 3.x dense (Llama + muP-style multipliers)")


class ScaledEmbedding(nn.Embedding):
    """Token embedding times `embedding_multiplier`; same parameter name, so weights load unchanged."""

    def __init__(self, num_embeddings: int, embedding_dim: int, multiplier: float) -> None:
        super().__init__(num_embeddings, embedding_dim)
        self.multiplier = multiplier

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return super().forward(input_ids) * self.multiplier


class GraniteDecoderLayer(LlamaDecoderLayer):
    """Llama's block with each branch output scaled by `residual_multiplier` before it joins the residual."""

    def __init__(self, config: PretrainedConfig, layer_idx: int) -> None:
        super().__init__(config, layer_idx)
        self.residual_multiplier = config.residual_multiplier

    def build_attention(self, config: PretrainedConfig, layer_idx: int) -> nn.Module:
        return LlamaAttention(config, layer_idx, scale=config.attention_multiplier)  # replaces 1/sqrt(head_dim)

    def forward(self, positions: torch.Tensor, hidden: torch.Tensor, residual: torch.Tensor | None,
                meta: AttentionMetadata, rotary: RotaryEmbedding) -> tuple[torch.Tensor, torch.Tensor]:
        if residual is None:
            hidden, residual = self.input_layernorm(hidden), hidden
        else:
            hidden, residual = self.input_layernorm(hidden, residual)   # the previous output is already scaled
        hidden = self.self_attn(positions, hidden, meta, rotary) * self.residual_multiplier
        hidden, residual = self.post_attention_layernorm(hidden, residual)
        return self.mlp(hidden) * self.residual_multiplier, residual


class GraniteForCausalLM(LlamaForCausalLM):
    """ibm-granite/granite-3.x-*: `logits = lm_head(h) / logits_scaling`."""

    layer_cls = GraniteDecoderLayer
    tiny_config = {
        "model_type": "granite", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 320, "max_position_embeddings": 512,
        "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
        # Values away from 1 so a forgotten multiplier fails the conformance test.
        "embedding_multiplier": 12.0, "residual_multiplier": 0.22, "attention_multiplier": 0.1,
        "logits_scaling": 4.0,
    }

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        self.model.embed_tokens = ScaledEmbedding(config.vocab_size, config.hidden_size,
                                                  config.embedding_multiplier)
        self.tie_weights_()  # re-tie lm_head to the new embedding

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return super().compute_logits(hidden) / self.config.logits_scaling
