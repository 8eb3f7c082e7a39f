"""Qwen3-MoE: Qwen3 attention with sparse expert MLPs (top-k of softmax, optionally renormalised)."""

from __future__ import annotations

from transformers import PretrainedConfig
from torch import nn

from ember.layers.moe import SparseMoeBlock
from ember.models.llama import LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM, LlamaMLP


class Qwen3MoeDecoderLayer(LlamaDecoderLayer):
    def build_attention(self, config: PretrainedConfig, layer_idx: int) -> nn.Module:
        return LlamaAttention(config, layer_idx, qk_norm=True)

    def build_mlp(self, config: PretrainedConfig, layer_idx: int) -> nn.Module:
        sparse = (layer_idx not in (config.mlp_only_layers or []) and config.num_experts > 0
                  and (layer_idx + 1) % config.decoder_sparse_step == 0)
        if not sparse:
            return LlamaMLP(config.hidden_size, config.intermediate_size, config.hidden_act)
        return SparseMoeBlock(config.hidden_size, config.moe_intermediate_size, config.num_experts,
                              config.num_experts_per_tok, config.norm_topk_prob, config.hidden_act)


class Qwen3MoeForCausalLM(LlamaForCausalLM):
    """Qwen3-30B-A3B / 235B-A22B. Checkpoint experts: `mlp.experts.{e}.{gate,up,down}_proj.weight`, or stacked."""

    layer_cls = Qwen3MoeDecoderLayer
    expert_parts = {"gate_proj": "gate", "up_proj": "up", "down_proj": "down"}
    tiny_config = {
        "model_type": "qwen3_moe", "hidden_size": 64, "intermediate_size": 96, "moe_intermediate_size": 32,
        "num_hidden_layers": 3, "mlp_only_layers": [2], "num_attention_heads": 4, "num_key_value_heads": 2,
        "head_dim": 16, "num_experts": 4, "num_experts_per_tok": 2, "norm_topk_prob": False, "vocab_size": 300,
        "max_position_embeddings": 256, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
    }
