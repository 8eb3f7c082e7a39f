"""Large exports split into safetensors shards + index (as save_pretrained does) and load back unchanged."""

from __future__ import annotations

import json

import torch
from safetensors.torch import load_file

from ember.quantization.export import save_sharded


def test_small_state_is_one_file(tmp_path):
    state = {"a": torch.zeros(4), "b": torch.ones(2, 2)}
    save_sharded(state, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]
    assert torch.equal(load_file(tmp_path / "model.safetensors")["b"], state["b"])


def test_split_past_max_shard_size_and_index_covers_every_tensor(tmp_path):
    state = {f"t{i}": torch.full((64,), float(i)) for i in range(6)}  # 256 bytes each
    save_sharded(state, tmp_path, max_shard_size=600)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    files = sorted(p.name for p in tmp_path.glob("*.safetensors"))
    assert len(files) == 3 and files[0] == "model-00001-of-00003.safetensors"
    assert set(index["weight_map"]) == set(state) and index["metadata"]["total_size"] == 6 * 256
    for name, file in index["weight_map"].items():
        assert torch.equal(load_file(tmp_path / file)[name], state[name])


def test_sharded_quantized_checkpoint_loads_like_the_single_file(tiny_q_dir, qopts, tmp_path, monkeypatch):
    """The same fp8 export written whole and in shards gives the same greedy tokens and logits through LLM."""
    from ember import LLM, SamplingParams
    from ember.quantization import export
    from ember.quantization.workbench import quantize

    whole, sharded = tmp_path / "whole", tmp_path / "sharded"
    quantize(tiny_q_dir, "fp8", whole, qopts())
    monkeypatch.setattr(export, "MAX_SHARD_SIZE", 200_000)
    quantize(tiny_q_dir, "fp8", sharded, qopts())
    assert (sharded / "model.safetensors.index.json").exists() and not (sharded / "model.safetensors").exists()
    params = SamplingParams(max_tokens=8, temperature=0.0, logprobs=1)
    a = LLM(whole, device="cpu").generate("w5 w6 w7", params)[0].outputs[0]
    b = LLM(sharded, device="cpu").generate("w5 w6 w7", params)[0].outputs[0]
    assert a.token_ids == b.token_ids
