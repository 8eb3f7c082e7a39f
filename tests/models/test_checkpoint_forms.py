"""Checkpoint layouts beyond what save_pretrained writes: fused 3-D experts, and features the tests rely on."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from ember.layers.attention import Attention
from ember.loader.build import load_model
from ember.plugins import get_registry

from model_driver import PagedDriver, tiny_hf_model


@pytest.mark.parametrize("arch", ["Qwen3MoeForCausalLM", "MixtralForCausalLM"])
def test_fused_expert_checkpoint(arch, tmp_path):
    """transformers 5's in-memory layout (`mlp.experts.gate_up_proj` [E, 2I, H]) loads like per-expert tensors."""
    hf = tiny_hf_model(arch, seed=3)
    hf.save_pretrained(tmp_path)
    state = {k: v.contiguous() for k, v in hf.state_dict().items()}
    assert any(k.endswith("experts.gate_up_proj") for k in state)
    for f in tmp_path.glob("*.safetensors"):
        f.unlink()
    save_file(state, str(tmp_path / "model.safetensors"))
    model = load_model(tmp_path, dtype=torch.float32, device="cpu")
    tokens = list(range(5, 25))
    with torch.no_grad():
        ref = hf(torch.tensor([tokens])).logits[0]
    torch.testing.assert_close(PagedDriver(model).step({0: tokens})[0], ref, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("arch", get_registry().names("model"))
def test_tiny_config_is_built_as_declared(arch, tmp_path):
    """One Attention per layer with layer_idx 0..L-1; sliding windows shorter than the test prompts exist."""
    hf = tiny_hf_model(arch)
    hf.save_pretrained(tmp_path)
    model = load_model(tmp_path, dtype=torch.float32, device="cpu")
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    assert sorted(m.layer_idx for m in layers) == list(range(hf.config.num_hidden_layers))
    if getattr(hf.config, "sliding_window", None):
        assert any(m.sliding_window is not None and m.sliding_window < 20 for m in layers), arch


def test_sliding_window_matters():
    """Guard against a silently ignored window: dropping it changes the logits of a long prompt."""
    import tempfile
    hf = tiny_hf_model("MistralForCausalLM")
    with tempfile.TemporaryDirectory() as d:
        hf.save_pretrained(d)
        model = load_model(d, dtype=torch.float32, device="cpu")
    tokens = list(range(3, 33))
    windowed = PagedDriver(model).step({0: tokens})[0]
    for m in model.modules():
        if isinstance(m, Attention):
            m.sliding_window = None
    full = PagedDriver(model).step({0: tokens})[0]
    assert not torch.allclose(windowed[-1], full[-1], atol=1e-3)
    torch.testing.assert_close(windowed[:6], full[:6])
