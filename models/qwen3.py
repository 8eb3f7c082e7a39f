"""Qwen3 (dense): Llama with per-head RMSNorm on q and k before rope, explicit head_dim."""

from transformers import PretrainedConfig
from torch import nn

from ember.models.llama import LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM


class Qwen3DecoderLayer(LlamaDecoderLayer):
    def build_attention(self, config: PretrainedConfig, layer_idx: int) -> nn.Module:
        return LlamaAttention(config, layer_idx, qk_norm=True)


class Qwen3ForCausalLM(LlamaForCausalLM):
    """Qwen3 0.6B-32B."""

    layer_cls = Qwen3DecoderLayer
    tiny_config = {
        "model_type": "qwen3", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 32, "vocab_size": 300,
        "max_position_embeddings": 256, "rope_parameters": {"rope_type": "linear", "rope_theta": 10000.0,
                                                            "factor": 2.0},
        "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2,
    }
