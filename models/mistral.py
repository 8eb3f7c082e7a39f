"""Mistral: Llama with a sliding attention window (from `config.sliding_window`, handled by the shared layers)."""

from ember.models.llama import LlamaForCausalLM


class MistralForCausalLM(LlamaForCausalLM):
    """Mistral 7B / Ministral / Mistral-Nemo; every layer attends within `sliding_window` when it is set."""

    tiny_config = {
        "model_type": "mistral", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 1, "head_dim": 16, "vocab_size": 288,
        "max_position_embeddings": 256, "sliding_window": 6, "tie_word_embeddings": False,
        "bos_token_id": 1, "eos_token_id": 2,
    }
