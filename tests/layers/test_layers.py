"""Shared layers against their transformers counterparts: rotary (every rope type), RMSNorm, linears, MoE."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, Phi3Config
from transformers.models.llama.modeling_llama import LlamaRMSNorm, LlamaRotaryEmbedding, apply_rotary_pos_emb
from transformers.models.gemma3.modeling_gemma3 import Gemma3RMSNorm
from transformers.models.phi3.modeling_phi3 import Phi3RotaryEmbedding
from transformers.models.phi3.modeling_phi3 import apply_rotary_pos_emb as phi3_apply_rotary
from transformers.models.qwen3_moe.configuration_qwen3_moe import Qwen3MoeConfig
from transformers.models.qwen3_moe.modeling_qwen3_moe import Qwen3MoeSparseMoeBlock

from ember.layers.linear import MergedLinear, QKVLinear
from ember.layers.moe import SparseMoeBlock
from ember.layers.norm import RMSNorm
from ember.layers.rotary import RotaryEmbedding

ROPES = {
    "default": {"rope_type": "default", "rope_theta": 10000.0},
    "linear": {"rope_type": "linear", "rope_theta": 10000.0, "factor": 4.0},
    "dynamic": {"rope_type": "dynamic", "rope_theta": 10000.0, "factor": 4.0},
    "yarn": {"rope_type": "yarn", "rope_theta": 10000.0, "factor": 4.0, "original_max_position_embeddings": 32},
    "llama3": {"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0, "low_freq_factor": 1.0,
               "high_freq_factor": 4.0, "original_max_position_embeddings": 32},
}


def _ember_rope(config, head_dim):
    rope = RotaryEmbedding(config, head_dim)
    rope.init_buffers()
    return rope


@pytest.mark.parametrize("kind", sorted(ROPES))
def test_rotary_matches_transformers(kind):
    config = LlamaConfig(hidden_size=64, num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                         rope_parameters=dict(ROPES[kind]))
    t, d = 40, 16
    q, k = torch.randn(t, 4 * d), torch.randn(t, 2 * d)
    pos = torch.randperm(100)[:t]
    hf = LlamaRotaryEmbedding(config)
    cos, sin = hf(q, pos[None])
    ref_q, ref_k = apply_rotary_pos_emb(q.view(1, t, 4, d).transpose(1, 2), k.view(1, t, 2, d).transpose(1, 2),
                                        cos, sin)
    got_q, got_k = _ember_rope(config, d)(pos, q, k)
    torch.testing.assert_close(got_q, ref_q.transpose(1, 2).reshape(t, -1))
    torch.testing.assert_close(got_k, ref_k.transpose(1, 2).reshape(t, -1))
    if kind not in ("default", "dynamic"):  # the scaling must do something (dynamic == default below max)
        plain = LlamaConfig(hidden_size=64, num_attention_heads=4, max_position_embeddings=128)
        assert not torch.allclose(_ember_rope(plain, d)(pos, q, k)[0], got_q)


@pytest.mark.parametrize("past_original", [False, True])
def test_longrope_partial_matches_phi3(past_original):
    """Short factors inside the original context, long ones past it (HF picks by the batch's max position)."""
    rope = {"rope_type": "longrope", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
            "original_max_position_embeddings": 32, "short_factor": [1.0, 1.5, 2.0, 2.5],
            "long_factor": [3.0, 4.0, 5.0, 6.0]}
    config = Phi3Config(hidden_size=64, num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=128,
                        rope_parameters=rope, pad_token_id=0)
    t, d = 20, 16
    pos = torch.arange(t) + (40 if past_original else 0)
    q, k = torch.randn(t, 4 * d), torch.randn(t, 4 * d)
    cos, sin = Phi3RotaryEmbedding(config)(q, pos[None])
    ref_q, _ = phi3_apply_rotary(q.view(1, t, 4, d).transpose(1, 2), k.view(1, t, 4, d).transpose(1, 2), cos, sin)
    got_q, _ = _ember_rope(config, d)(pos, q, k)
    torch.testing.assert_close(got_q, ref_q.transpose(1, 2).reshape(t, -1))
    torch.testing.assert_close(got_q.view(t, 4, d)[..., 8:], q.view(t, 4, d)[..., 8:])  # the unrotated half


def test_rmsnorm_variants_and_fused_residual():
    x, r = torch.randn(7, 32), torch.randn(7, 32)
    w = torch.randn(32) * 0.1
    for ours, theirs in ((RMSNorm(32, 1e-6), LlamaRMSNorm(32, 1e-6)), (RMSNorm(32, 1e-6, gemma=True),
                                                                         Gemma3RMSNorm(32, 1e-6))):
        ours.weight.data.copy_(w)
        theirs.weight.data.copy_(w)
        torch.testing.assert_close(ours(x), theirs(x))
        out, res = ours(x, r)
        torch.testing.assert_close(res, x + r)
        torch.testing.assert_close(out, theirs(x + r))
    llama, gemma = RMSNorm(32), RMSNorm(32, gemma=True)
    torch.testing.assert_close(llama(x), gemma(x))  # default inits (1 and 0) agree ...
    llama.weight.data.copy_(w)
    gemma.weight.data.copy_(w)
    assert not torch.allclose(llama(x), gemma(x))   # ... the same stored weight does not


def test_packed_linears_load_by_shard():
    qkv = QKVLinear(16, head_dim=4, num_heads=4, num_kv_heads=2, bias=True)
    q, k, v = torch.randn(16, 16), torch.randn(8, 16), torch.randn(8, 16)
    for shard, t in (("v", v), ("q", q), ("k", k)):
        qkv.weight_loader(qkv.weight, t, shard)
    torch.testing.assert_close(qkv.weight.data, torch.cat([q, k, v]))
    with pytest.raises(ValueError, match=r"expected \(8, 16\), got \(16, 16\)"):
        qkv.weight_loader(qkv.weight, q, "k")
    merged = MergedLinear(8, [6, 6])
    g, u = torch.randn(6, 8), torch.randn(6, 8)
    merged.weight_loader(merged.weight, u, 1)
    merged.weight_loader(merged.weight, g, 0)
    torch.testing.assert_close(merged.weight.data, torch.cat([g, u]))


@pytest.mark.parametrize("norm_topk_prob", [False, True])
def test_moe_block_matches_qwen3_moe(norm_topk_prob):
    config = Qwen3MoeConfig(hidden_size=32, moe_intermediate_size=16, num_experts=4, num_experts_per_tok=2,
                            norm_topk_prob=norm_topk_prob)
    torch.manual_seed(0)
    hf = Qwen3MoeSparseMoeBlock(config)
    for p in hf.parameters():
        torch.nn.init.normal_(p, std=0.3)
    ours = SparseMoeBlock(32, 16, 4, 2, norm_topk_prob)
    ours.gate.weight.data.copy_(hf.gate.weight)
    ours.experts.weight_loader(ours.experts.gate_up_proj, hf.experts.gate_up_proj.data)
    for e in range(4):
        ours.experts.weight_loader(ours.experts.down_proj, hf.experts.down_proj.data[e], (e, "down"))
    x = torch.randn(11, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), hf(x[None])[0])
