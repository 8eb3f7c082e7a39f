"""ember's export vs ModelOpt's own `export_hf_checkpoint` on the same tiny model, and ember loading ModelOpt's
checkpoints with the logits ModelOpt's fake quantization gives."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

mtq = pytest.importorskip("modelopt.torch.quantization")  # a declared dependency: absent only in broken envs


def _tensors(path):
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        return {k: (f.get_tensor(k).dtype, tuple(f.get_tensor(k).shape)) for k in f.keys()}


TEST_IDS = torch.randint(3, 320, (1, 48), generator=torch.Generator().manual_seed(1))


def _modelopt_export(src, cfg_name, out, calib_ids):
    """ModelOpt quantizes the HF model, gives its fake-quant logits on TEST_IDS, then exports (which mutates the
    model in place, so the logits come first)."""
    from modelopt.torch.export import export_hf_checkpoint
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(src), dtype=torch.float32).eval()
    mtq.quantize(model, getattr(mtq, cfg_name), lambda m: [m(calib_ids[i:i + 1]) for i in range(len(calib_ids))])
    if cfg_name == "FP8_DEFAULT_CFG":
        # ModelOpt's export gives fused siblings (q/k/v, gate/up) one weight scale, the max, and requantizes: do
        # the same to the fake-quant model so it computes what the exported checkpoint holds.
        for layer in model.model.layers:
            for group in ((layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj),
                          (layer.mlp.gate_proj, layer.mlp.up_proj)):
                amax = torch.stack([m.weight_quantizer.amax.reshape(()) for m in group]).max()
                for m in group:
                    m.weight_quantizer.amax = amax.clone()
    with torch.no_grad():
        ref = model(TEST_IDS).logits[0].float()
    export_hf_checkpoint(model, export_dir=str(out))
    return ref


@pytest.fixture(scope="module")
def modelopt_fp8(tiny_q_dir, tmp_path_factory):
    ids = torch.randint(3, 320, (4, 64), generator=torch.Generator().manual_seed(0))
    out = tmp_path_factory.mktemp("mo") / "fp8"
    return _modelopt_export(tiny_q_dir, "FP8_DEFAULT_CFG", out, ids), out


def test_fp8_export_matches_modelopt_layout(modelopt_fp8, tiny_q_dir, qopts, tmp_path):
    from ember.quantization.workbench import quantize

    _, mo_dir = modelopt_fp8
    ours = tmp_path / "ember-fp8"
    quantize(tiny_q_dir, "fp8", ours, qopts(eval_dataset=None))
    assert _tensors(ours) == _tensors(mo_dir)  # same names, dtypes and shapes
    mo_hf, ours_hf = (json.loads((d / "hf_quant_config.json").read_text()) for d in (mo_dir, ours))
    assert set(ours_hf) == set(mo_hf) and ours_hf["producer"]["name"] == "modelopt"
    assert ours_hf["quantization"] == mo_hf["quantization"]
    mo_q, ours_q = (json.loads((d / "config.json").read_text())["quantization_config"] for d in (mo_dir, ours))
    assert set(ours_q) == set(mo_q) and ours_q["config_groups"] == mo_q["config_groups"]
    assert ours_q["quant_method"] == "modelopt" and ours_q["ignore"] == mo_q["ignore"]


def _ember_logits(path, ids):
    from ember.evaluation import PrefillRunner
    from ember.loader.build import load_model

    model = load_model(path, torch.float32, "cpu")
    runner = PrefillRunner(model, max_seqs=1, max_len=ids.shape[1])
    return model.compute_logits(runner.hidden([ids[0].tolist()])[0])


def test_ember_runs_modelopt_fp8_checkpoint_like_modelopt(modelopt_fp8):
    """ModelOpt's fake-quantized model and ember's QuantLinear fallback on ModelOpt's export agree."""
    ref, mo_dir = modelopt_fp8
    got = _ember_logits(mo_dir, TEST_IDS)
    assert float((got - ref).abs().max() / ref.abs().max()) < 2e-3


def test_ember_runs_modelopt_int8_smoothquant_checkpoint(tiny_q_dir, tmp_path):
    ids = torch.randint(3, 320, (4, 64), generator=torch.Generator().manual_seed(0))
    ref = _modelopt_export(tiny_q_dir, "INT8_SMOOTHQUANT_CFG", tmp_path / "sq", ids)
    got = _ember_logits(tmp_path / "sq", TEST_IDS)
    # int8 rounding of smoothed activations: ModelOpt and ember round at the same points but fold the resmoothed
    # scales in a different order, so a few values land one int8 step apart
    assert float((got - ref).abs().max() / ref.abs().max()) < 3e-2
