"""Gemma 3 (text): (1 + w) RMSNorms around both sublayers, q/k norm, mixed sliding/full layers, GeGLU, scaled embeds."""

from __future__ import annotations

import torch
from torch import nn
from transformers import PretrainedConfig

from ember.attention.metadata import AttentionMetadata
from ember.layers.linear import Linear
from ember.layers.norm import RMSNorm
from ember.layers.rotary import RotaryEmbedding
from ember.model_base import CausalLM
from ember.models.llama import LlamaAttention, LlamaMLP, head_dim_of


class Gemma3DecoderLayer(nn.Module):
    """x + post_attn_norm(attn(input_norm(x))), then + post_ff_norm(mlp(pre_ff_norm(.)))."""

    def __init__(self, config: PretrainedConfig, layer_idx: int) -> None:
        super().__init__()
        self.layer_type = config.layer_types[layer_idx]
        self.self_attn = LlamaAttention(config, layer_idx, qk_norm=True, gemma_norm=True,
                                        scale=config.query_pre_attn_scalar ** -0.5)
        self.mlp = LlamaMLP(config.hidden_size, config.intermediate_size, config.hidden_activation)
        h, eps = config.hidden_size, config.rms_norm_eps
        self.input_layernorm = RMSNorm(h, eps, gemma=True)
        self.post_attention_layernorm = RMSNorm(h, eps, gemma=True)
        self.pre_feedforward_layernorm = RMSNorm(h, eps, gemma=True)
        self.post_feedforward_layernorm = RMSNorm(h, eps, gemma=True)

    def forward(self, positions: torch.Tensor, hidden: torch.Tensor, meta: AttentionMetadata,
                rotary: RotaryEmbedding) -> torch.Tensor:
        attn = self.self_attn(positions, self.input_layernorm(hidden), meta, rotary)
        hidden = hidden + self.post_attention_layernorm(attn)
        mlp = self.mlp(self.pre_feedforward_layernorm(hidden))
        return hidden + self.post_feedforward_layernorm(mlp)


class Gemma3Model(nn.Module):
    """input_ids [T], positions [T] -> hidden [T, H]; one rope per layer type (local base for sliding layers)."""

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__()
        self.hidden_size = config.hidden_size
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(Gemma3DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps, gemma=True)
        self.rotary_emb = nn.ModuleDict({t: RotaryEmbedding(config, head_dim_of(config), layer_type=t)
                                         for t in sorted(set(config.layer_types))})

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        hidden = self.embed_tokens(input_ids)                                         # [T, H]
        # Gemma scales by sqrt(H) rounded to the model dtype (55.4256 -> 55.5 in bf16), as the reference does
        hidden = hidden * torch.tensor(self.hidden_size ** 0.5, dtype=hidden.dtype)
        for layer in self.layers:
            hidden = layer(positions, hidden, meta, self.rotary_emb[layer.layer_type])
        return self.norm(hidden)


class Gemma3ForCausalLM(CausalLM):
    """Gemma 3 1B-27B text decoders (and 270M); ties lm_head to the embeddings; optional final logit soft-cap."""

    packed_modules_mapping = {
        "q_proj": ("qkv_proj", "q"), "k_proj": ("qkv_proj", "k"), "v_proj": ("qkv_proj", "v"),
        "gate_proj": ("gate_up_proj", 0), "up_proj": ("gate_up_proj", 1),
    }
    tiny_config = {
        "model_type": "gemma3_text", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 4,
        "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 32, "query_pre_attn_scalar": 24,
        "vocab_size": 320, "max_position_embeddings": 256, "sliding_window": 5,
        "layer_types": ["sliding_attention", "sliding_attention", "full_attention", "sliding_attention"],
        "rope_parameters": {"sliding_attention": {"rope_type": "default", "rope_theta": 10000.0},
                            "full_attention": {"rope_type": "linear", "rope_theta": 1000000.0, "factor": 8.0}},
        "final_logit_softcapping": 30.0, "tie_word_embeddings": True,
        "bos_token_id": 2, "eos_token_id": 1, "pad_token_id": 0,
    }

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        self.model = Gemma3Model(config)
        self.lm_head = Linear(config.hidden_size, config.vocab_size)
        self.tie_weights_()

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        logits = super().compute_logits(hidden)                                       # [N, V] fp32
        cap = getattr(self.config, "final_logit_softcapping", None)
        return logits if cap is None else torch.tanh(logits / cap) * cap
