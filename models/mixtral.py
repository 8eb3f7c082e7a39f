"""Mixtral: Mistral attention with a `block_sparse_moe` of top-2-of-8 experts (renormalised softmax weights)."""

from __future__ import annotations

from transformers import PretrainedConfig
from torch import nn

from ember.layers.moe import SparseMoeBlock
from ember.models.llama import LlamaDecoderLayer, LlamaForCausalLM


class MixtralDecoderLayer(LlamaDecoderLayer):
    def build_mlp(self, config: PretrainedConfig, layer_idx: int) -> nn.Module:
        return SparseMoeBlock(config.hidden_size, config.intermediate_size, config.num_local_experts,
                              config.num_experts_per_tok, norm_topk_prob=True, act=config.hidden_act)

class MixtralForCausalLM(LlamaForCausalLM):
    """Mixtral 8x7B / 8x22B; the MoE block sits at `mlp` (its transformers 5 name).

    Checkpoint experts: `block_sparse_moe.experts.{e}.w1/w3/w2.weight` (gate/up/down), or the transformers 5
    in-memory form `mlp.experts.gate_up_proj` / `mlp.experts.down_proj`.
    """

    layer_cls = MixtralDecoderLayer
    expert_parts = {"w1": "gate", "w3": "up", "w2": "down"}
    tiny_config = {
        "model_type": "mixtral", "hidden_size": 64, "intermediate_size": 48, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "num_local_experts": 4,
        "num_experts_per_tok": 2, "vocab_size": 300, "max_position_embeddings": 256, "sliding_window": None,
        "rope_parameters": {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 2.0},
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
    }

    def map_checkpoint_name(self, name: str, params: dict[str, nn.Parameter]):
        return super().map_checkpoint_name(name.replace(".block_sparse_moe.", ".mlp."), params)
