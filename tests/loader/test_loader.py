"""load_model / SafetensorsCheckpoint: sharded folders, tied embeddings, and errors that name the file and tensor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, LlamaConfig

from ember.loader.build import UnsupportedArchitectureError, load_model
from ember.loader.weights import CheckpointError, SafetensorsCheckpoint
from ember.plugins import get_registry


def tiny_llama(tmp_path: Path, tie: bool = False, **save_kwargs) -> tuple[Path, torch.nn.Module]:
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, vocab_size=128, max_position_embeddings=64, tie_word_embeddings=tie)
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager").eval()
    path = tmp_path / "ckpt"
    model.save_pretrained(path, **save_kwargs)
    return path, model


def test_single_file_loads_and_ties(tmp_path):
    path, hf = tiny_llama(tmp_path, tie=True)
    model = load_model(path, dtype=torch.float32, device="cpu")
    assert model.lm_head.weight is model.model.embed_tokens.weight
    torch.testing.assert_close(model.model.embed_tokens.weight, hf.model.embed_tokens.weight)
    assert not model.training


def test_tied_checkpoint_may_still_carry_lm_head(tmp_path):
    path, hf = tiny_llama(tmp_path, tie=True)
    tensors = dict(hf.state_dict())
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"].clone()
    (path / "model.safetensors").unlink()
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path / "model.safetensors"))
    model = load_model(path, dtype=torch.float32, device="cpu")
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_bf16_and_untied(tmp_path):
    path, hf = tiny_llama(tmp_path, tie=False)
    model = load_model(path, dtype=torch.bfloat16, device="cpu")
    assert model.lm_head.weight is not model.model.embed_tokens.weight
    assert model.lm_head.weight.dtype == torch.bfloat16
    assert model.model.rotary_emb.cos_cache.dtype == torch.float32
    torch.testing.assert_close(model.lm_head.weight, hf.lm_head.weight.to(torch.bfloat16))


def test_sharded_checkpoint(tmp_path):
    path, hf = tiny_llama(tmp_path, max_shard_size="20KB")
    index = json.loads((path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 2
    names = [n for n, _ in SafetensorsCheckpoint(path)]
    assert sorted(names) == sorted(hf.state_dict())
    model = load_model(path, dtype=torch.float32, device="cpu")
    qkv = model.model.layers[1].self_attn.qkv_proj.weight
    attn = hf.model.layers[1].self_attn
    torch.testing.assert_close(qkv, torch.cat([attn.q_proj.weight, attn.k_proj.weight, attn.v_proj.weight]))


def test_missing_shard(tmp_path):
    path, _ = tiny_llama(tmp_path, max_shard_size="20KB")
    shard = sorted(path.glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(CheckpointError, match=shard.name) as err:
        load_model(path, dtype=torch.float32, device="cpu")
    assert "model.safetensors.index.json" in str(err.value)


def test_corrupt_file(tmp_path):
    path, _ = tiny_llama(tmp_path)
    (path / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_model(path, dtype=torch.float32, device="cpu")


def test_tensor_missing_from_shard(tmp_path):
    path, _ = tiny_llama(tmp_path, max_shard_size="20KB")
    index = json.loads((path / "model.safetensors.index.json").read_text())
    name = "model.layers.0.mlp.down_proj.weight"
    file = index["weight_map"][name]
    index["weight_map"]["model.layers.0.mlp.extra.weight"] = file
    (path / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match="model.layers.0.mlp.extra.weight") as err:
        load_model(path, dtype=torch.float32, device="cpu")
    assert file in str(err.value)


def test_missing_parameter(tmp_path):
    path, hf = tiny_llama(tmp_path)
    tensors = {k: v.contiguous() for k, v in hf.state_dict().items() if k != "model.layers.1.self_attn.k_proj.weight"}
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="model.layers.1.self_attn.qkv_proj.weight"):
        load_model(path, dtype=torch.float32, device="cpu")


def test_unexpected_tensor(tmp_path):
    path, hf = tiny_llama(tmp_path)
    tensors = {k: v.contiguous() for k, v in hf.state_dict().items()}
    tensors["model.layers.0.self_attn.rotary_emb.inv_freq"] = torch.ones(4)  # harmless: ignored
    tensors["model.layers.0.mystery.weight"] = torch.ones(4)
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError, match="model.layers.0.mystery.weight") as err:
        load_model(path, dtype=torch.float32, device="cpu")
    assert "inv_freq" not in str(err.value)


@pytest.mark.parametrize("name", ["model.layers.0.self_attn.k_proj.weight", "model.norm.weight"])
def test_wrong_shape(tmp_path, name):
    path, hf = tiny_llama(tmp_path)
    tensors = {k: v.contiguous() for k, v in hf.state_dict().items()}
    tensors[name] = torch.zeros(3, 5)
    save_file(tensors, str(path / "model.safetensors"))
    with pytest.raises(CheckpointError) as err:
        load_model(path, dtype=torch.float32, device="cpu")
    msg = str(err.value)
    assert name in msg and "model.safetensors" in msg and "(3, 5)" in msg and "expected" in msg


def test_unsupported_architecture(tmp_path):
    path, _ = tiny_llama(tmp_path)
    config = json.loads((path / "config.json").read_text())
    config["architectures"] = ["LlamaForSequenceClassification"]
    (path / "config.json").write_text(json.dumps(config))
    with pytest.raises(UnsupportedArchitectureError) as err:
        load_model(path, dtype=torch.float32, device="cpu")
    msg = str(err.value)
    assert "LlamaForSequenceClassification" in msg and "docs/plugins.md" in msg
    assert all(name in msg for name in get_registry().names("model"))


def test_missing_folder(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        SafetensorsCheckpoint(tmp_path / "nope")
