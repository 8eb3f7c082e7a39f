"""Phi-3 / Phi-4-mini: Llama layout with qkv_proj and gate_up_proj already fused in the checkpoint, longrope."""

from ember.models.llama import LlamaForCausalLM


class Phi3ForCausalLM(LlamaForCausalLM):
    """The checkpoint's fused `qkv_proj` / `gate_up_proj` match ember's parameters by name: nothing to repack."""

    packed_modules_mapping = {}
    tiny_config = {
        "model_type": "phi3", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300, "max_position_embeddings": 256,
        "rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
                            "original_max_position_embeddings": 64,
                            "short_factor": [1.0, 1.1, 1.3, 1.6], "long_factor": [1.0, 2.0, 4.0, 8.0]},
        "sliding_window": 10, "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
    }
