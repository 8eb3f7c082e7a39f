"""Llama: the base decoder most families here reuse (Attention -> DecoderLayer -> Model -> ForCausalLM)."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from transformers import PretrainedConfig

from ember.attention.metadata import AttentionMetadata
from ember.layers.activation import get_act_and_mul
from ember.layers.attention import Attention
from ember.layers.fused import fused_qk_rope
from ember.layers.linear import Linear, MergedLinear, QKVLinear
from ember.layers.norm import RMSNorm
from ember.layers.rotary import RotaryEmbedding
from ember.model_base import CausalLM


def head_dim_of(config: PretrainedConfig) -> int:
    return getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads


def sliding_window_of(config: PretrainedConfig, layer_idx: int) -> int | None:
    """The layer's window: per `layer_types` when the config has them, else the config-wide `sliding_window`."""
    window = getattr(config, "sliding_window", None)
    layer_types = getattr(config, "layer_types", None)
    if layer_types is not None:
        return window if layer_types[layer_idx] == "sliding_attention" else None
    return window


class LlamaAttention(nn.Module):
    """hidden [T, H] -> [T, H]: fused qkv, optional per-head q/k RMSNorm (Qwen3), rope, paged attention, o_proj."""

    def __init__(self, config: PretrainedConfig, layer_idx: int, qkv_bias: bool | None = None,
                 o_bias: bool | None = None, qk_norm: bool = False, gemma_norm: bool = False,
                 scale: float | None = None) -> None:
        super().__init__()
        bias = bool(getattr(config, "attention_bias", False))
        self.num_heads, self.num_kv_heads = config.num_attention_heads, config.num_key_value_heads
        self.head_dim = head_dim_of(config)
        self.qkv_proj = QKVLinear(config.hidden_size, self.head_dim, self.num_heads, self.num_kv_heads,
                                  bias=bias if qkv_bias is None else qkv_bias)
        self.o_proj = Linear(self.num_heads * self.head_dim, config.hidden_size,
                             bias=bias if o_bias is None else o_bias)
        if qk_norm:
            self.q_norm = RMSNorm(self.head_dim, config.rms_norm_eps, gemma=gemma_norm)
            self.k_norm = RMSNorm(self.head_dim, config.rms_norm_eps, gemma=gemma_norm)
        self.qk_norm = qk_norm
        self.attn = Attention(layer_idx, self.num_heads, self.num_kv_heads, self.head_dim,
                              scale=self.head_dim ** -0.5 if scale is None else scale,
                              sliding_window=sliding_window_of(config, layer_idx))

    def forward(self, positions: torch.Tensor, hidden: torch.Tensor, meta: AttentionMetadata,
                rotary: RotaryEmbedding) -> torch.Tensor:
        q, k, v = self.qkv_proj.split(self.qkv_proj(hidden))                          # [T, Hq*D], [T, Hkv*D] x2
        fused = fused_qk_rope(q) if self.qk_norm else None
        if fused is not None:   # q_norm, k_norm and rope in one kernel (same rounding as the three below)
            q, k = fused.qk_norm_rotary(positions, q, k, self.q_norm.weight, self.k_norm.weight, self.q_norm.eps,
                                        self.q_norm.gemma, rotary.cos_cache, rotary.sin_cache, rotary.head_dim)
        else:
            if self.qk_norm:
                t = q.shape[0]
                q = self.q_norm(q.view(t, self.num_heads, self.head_dim)).view(t, -1)
                k = self.k_norm(k.view(t, self.num_kv_heads, self.head_dim)).view(t, -1)
            q, k = rotary(positions, q, k)
        return self.o_proj(self.attn(q, k, v, meta))                                 # [T, H]


class LlamaMLP(nn.Module):
    """[T, H] -> [T, H]: down(act(gate) * up) with gate and up fused."""

    def __init__(self, hidden_size: int, intermediate_size: int, act: str, bias: bool = False) -> None:
        super().__init__()
        self.gate_up_proj = MergedLinear(hidden_size, [intermediate_size, intermediate_size], bias=bias)
        self.down_proj = Linear(intermediate_size, hidden_size, bias=bias)
        self.act_fn = get_act_and_mul(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if isinstance(self.down_proj, Linear):   # a plain linear folds the activation into its decode kernel
            return self.down_proj.forward_gated(self.gate_up_proj(x), self.act_fn)   # gate_up [T, 2I]
        return self.down_proj(self.gate_up_proj.forward_act(x, self.act_fn))  # a quantized gate_up may fold it in


class LlamaDecoderLayer(nn.Module):
    """Pre-norm block; the residual stream travels beside the hidden state so each norm fuses the add."""

    def __init__(self, config: PretrainedConfig, layer_idx: int) -> None:
        super().__init__()
        self.self_attn = self.build_attention(config, layer_idx)
        self.mlp = self.build_mlp(config, layer_idx)
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)

    def build_attention(self, config: PretrainedConfig, layer_idx: int) -> nn.Module:
        return LlamaAttention(config, layer_idx)

    def build_mlp(self, config: PretrainedConfig, layer_idx: int) -> nn.Module:
        return LlamaMLP(config.hidden_size, config.intermediate_size, config.hidden_act,
                        bias=bool(getattr(config, "mlp_bias", False)))

    def forward(self, positions: torch.Tensor, hidden: torch.Tensor, residual: torch.Tensor | None,
                meta: AttentionMetadata, rotary: RotaryEmbedding) -> tuple[torch.Tensor, torch.Tensor]:
        if residual is None:
            hidden, residual = self.input_layernorm(hidden), hidden
        else:
            hidden, residual = self.input_layernorm(hidden, residual)
        hidden = self.self_attn(positions, hidden, meta, rotary)
        hidden, residual = self.post_attention_layernorm(hidden, residual)
        return self.mlp(hidden), residual


class LlamaModel(nn.Module):
    """input_ids [T], positions [T] -> final-normed hidden [T, H]."""

    def __init__(self, config: PretrainedConfig, layer_cls: type[nn.Module] = LlamaDecoderLayer) -> None:
        super().__init__()
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(layer_cls(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.rotary_emb = RotaryEmbedding(config, head_dim_of(config))

    def forward(self, input_ids: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        hidden, residual = self.embed_tokens(input_ids), None                         # [T, H]
        for layer in self.layers:
            hidden, residual = layer(positions, hidden, residual, meta, self.rotary_emb)
        hidden, _ = self.norm(hidden, residual)
        return hidden


class LlamaForCausalLM(CausalLM):
    """Llama 2/3.x, SmolLM, TinyLlama, ...: GQA, rope types default/linear/llama3/dynamic/yarn, tied or not."""

    layer_cls: ClassVar[type[nn.Module]] = LlamaDecoderLayer
    packed_modules_mapping = {
        "q_proj": ("qkv_proj", "q"), "k_proj": ("qkv_proj", "k"), "v_proj": ("qkv_proj", "v"),
        "gate_proj": ("gate_up_proj", 0), "up_proj": ("gate_up_proj", 1),
    }
    tiny_config = {
        "model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
        "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 320, "max_position_embeddings": 512,
        "rope_parameters": {"rope_type": "llama3", "rope_theta": 10000.0, "factor": 8.0, "low_freq_factor": 1.0,
                            "high_freq_factor": 4.0, "original_max_position_embeddings": 64},
        "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "pad_token_id": 0,
    }

    def __init__(self, config: PretrainedConfig) -> None:
        super().__init__(config)
        self.model = LlamaModel(config, self.layer_cls)
        self.lm_head = Linear(config.hidden_size, config.vocab_size)
        self.tie_weights_()
