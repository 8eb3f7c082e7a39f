"""Qwen2 / Qwen2.5: Llama with q/k/v biases (no o_proj bias) and optional sliding layers from `layer_types`."""

from transformers import PretrainedConfig
from torch import nn

from ember.models.llama import LlamaAttention, LlamaDecoderLayer, LlamaForCausalLM


class Qwen2DecoderLayer(LlamaDecoderLayer):
    def build_attention(self, config: PretrainedConfig, layer_idx: int) -> nn.Module:
        return LlamaAttention(config, layer_idx, qkv_bias=True, o_bias=False)


class Qwen2ForCausalLM(LlamaForCausalLM):
    """Qwen2 family: yarn rope for long context; layers >= max_window_layers slide when use_sliding_window."""

    layer_cls = Qwen2DecoderLayer
    tiny_config = {
        "model_type": "qwen2", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300, "max_position_embeddings": 256,
        "rope_parameters": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0,
                            "original_max_position_embeddings": 64},
        "use_sliding_window": True, "sliding_window": 8, "max_window_layers": 1, "tie_word_embeddings": False,
        "bos_token_id": 1, "eos_token_id": 2,
    }
