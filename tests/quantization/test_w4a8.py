"""`w4a8-awq` (ModelOpt W4A8_AWQ): numerics bit-exact with ModelOpt's two-stage weight quantizer (INT4 group, then
FP8 per tensor), export layout against ModelOpt's own `export_hf_checkpoint` of W4A8_AWQ_BETA_CFG (which runs on
the CPU), ember running ModelOpt's W4A8 checkpoint with ModelOpt's fake-quant logits, and LLM(dir) on ember's."""

from __future__ import annotations

import copy
import json

import pytest
import torch
from safetensors import safe_open

from ember.quantization.formats import get_format
from ember.quantization.numerics import w4a8

mtq = pytest.importorskip("modelopt.torch.quantization")
from modelopt.torch.export import quant_utils  # noqa: E402

DTYPES = [torch.float32, torch.bfloat16, torch.float16]
TEST_IDS = torch.randint(3, 320, (1, 48), generator=torch.Generator().manual_seed(1))


def weight(n=64, k=256, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(n, k, generator=g) * torch.rand(n, 1, generator=g) * 4  # rows of different magnitude
    w[5, :32] = 0  # an all-zero group
    return w.to(dtype)


def modelopt_linear(w: torch.Tensor, x: torch.Tensor) -> torch.nn.Linear:
    """A Linear quantized with W4A8_AWQ_BETA_CFG's quantizers, max calibration (no AWQ search: same weight)."""
    lin = torch.nn.Linear(w.shape[1], w.shape[0], bias=False).to(w.dtype)
    with torch.no_grad():
        lin.weight.copy_(w)
    cfg = {**copy.deepcopy(mtq.W4A8_AWQ_BETA_CFG), "algorithm": "max"}
    mtq.quantize(lin, cfg, forward_loop=lambda m: m(x))
    return lin


@pytest.mark.parametrize("dtype", DTYPES)
def test_w4a8_export_tensors_match_modelopt(dtype):
    """weight_scale = group amax / 7 (not divided by weight_scale_2), weight_scale_2 = amax / 448, packing: what
    ModelOpt's export computes from its quantizers."""
    w = weight(dtype=dtype)
    lin = modelopt_linear(w, torch.randn(8, 256).to(dtype))
    packed, scale, scale_2 = w4a8.quantize(w.float(), 128)
    mo_scale = quant_utils.get_weight_scaling_factor(lin)
    mo_scale_2 = quant_utils.get_weight_scaling_factor_2(lin).squeeze()  # the export squeezes it to []
    assert scale.dtype == mo_scale.dtype == torch.float32 and torch.equal(scale, mo_scale)
    assert scale_2.shape == mo_scale_2.shape == () and torch.equal(scale_2, mo_scale_2)
    mo_packed = quant_utils.to_quantized_weight(w, mo_scale, quant_utils.QUANTIZATION_W4A8_AWQ, mo_scale_2, 128)
    assert packed.dtype == torch.uint8 and torch.equal(packed, mo_packed)


def test_w4a8_dequantize_matches_modelopt_fake_quant():
    """ember's w_hat = e4m3(q * weight_scale / weight_scale_2) * weight_scale_2 is ModelOpt's fp32 fake-quant weight
    bit for bit, and differs from the plain INT4 weight (the FP8 stage is applied)."""
    w = weight()
    lin = modelopt_linear(w, torch.randn(8, 256))
    with torch.no_grad():
        fake = lin.weight_quantizer(lin.weight)
    ours = w4a8.dequantize(*w4a8.quantize(w, 128))
    assert torch.equal(ours, fake)
    assert not torch.equal(ours, w4a8.int4.dequantize(*w4a8.int4.quantize(w, 128)))


def test_w4a8_format_activation_matches_modelopt():
    """The format's activation: x * pre_quant_scale through static FP8 with input_scale = amax / 448. Same FP8
    codes as ModelOpt; the values may differ in the last fp32 bit (x / s * s vs ModelOpt's order of operations)."""
    w = weight()
    x = torch.randn(16, 256, generator=torch.Generator().manual_seed(2)) * 3
    lin = modelopt_linear(w, x)
    fmt = get_format("W4A8_AWQ", 128)
    input_scale = quant_utils.get_activation_scaling_factor(lin).reshape(1)
    t = {"input_scale": input_scale, "pre_quant_scale": torch.ones(256)}
    with torch.no_grad():
        ref = lin.input_quantizer(x)
    ours = fmt.act(x, t)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=0)
    assert not torch.equal(ref, x)


def _tensors(path):
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        return {k: (f.get_tensor(k).dtype, tuple(f.get_tensor(k).shape)) for k in f.keys()}


@pytest.fixture(scope="module")
def modelopt_w4a8(tiny_q_dir, tmp_path_factory):
    """ModelOpt's W4A8_AWQ_BETA_CFG on the HF model (awq_lite runs on the CPU), its fake-quant logits on TEST_IDS
    after its own fused-layer preprocessing (the export's: one FP8 weight / input amax per q/k/v and gate/up group,
    pre_quant_scale folded into the norms), then its export."""
    from modelopt.torch.export import export_hf_checkpoint
    from modelopt.torch.export.unified_export_hf import requantize_resmooth_fused_llm_layers
    from transformers import AutoModelForCausalLM

    ids = torch.randint(3, 320, (4, 64), generator=torch.Generator().manual_seed(0))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_q_dir), dtype=torch.float32).eval()
    mtq.quantize(model, mtq.W4A8_AWQ_BETA_CFG, lambda m: [m(ids[i:i + 1]) for i in range(len(ids))])
    with torch.no_grad():
        requantize_resmooth_fused_llm_layers(model)
        ref = model(TEST_IDS).logits[0].float()
    out = tmp_path_factory.mktemp("mo") / "w4a8"
    export_hf_checkpoint(model, export_dir=str(out))
    return ref, out


def test_w4a8_export_matches_modelopt_layout(modelopt_w4a8, tiny_q_dir, qopts, tmp_path):
    from ember.quantization.workbench import quantize

    _, mo_dir = modelopt_w4a8
    ours = tmp_path / "ember-w4a8"
    quantize(tiny_q_dir, "w4a8-awq", ours, qopts(eval_dataset=None, recipe_options={"grid": 4}))
    mine, theirs = _tensors(ours), _tensors(mo_dir)
    # the one known difference (docs/quantization.md): ModelOpt folds the q/k/v and gate/up pre_quant_scale into
    # the preceding norm; ember writes it (shared) on every linear
    extra = set(mine) - set(theirs)
    assert extra and all(k.endswith(".pre_quant_scale") and k.split(".")[-2] in
                         ("q_proj", "k_proj", "v_proj", "gate_proj", "up_proj") for k in extra), extra
    assert {k: v for k, v in mine.items() if k not in extra} == theirs  # names, dtypes, shapes
    mo_hf, ours_hf = (json.loads((d / "hf_quant_config.json").read_text()) for d in (mo_dir, ours))
    assert ours_hf["quantization"] == mo_hf["quantization"] and ours_hf["quantization"]["quant_algo"] == "W4A8_AWQ"
    mo_q, ours_q = (json.loads((d / "config.json").read_text())["quantization_config"] for d in (mo_dir, ours))
    assert set(mo_q) <= set(ours_q) and ours_q["quant_method"] == "modelopt" and ours_q["ignore"] == mo_q["ignore"]
    with safe_open(str(ours / "model.safetensors"), "pt") as f:  # one FP8 weight / input scale per fused group
        for name in ("weight_scale_2", "input_scale"):
            q, k, v = (f.get_tensor(f"model.layers.0.self_attn.{p}_proj.{name}") for p in "qkv")
            assert torch.equal(q, k) and torch.equal(q, v), name


def test_ember_runs_modelopt_w4a8_checkpoint_like_modelopt(modelopt_w4a8):
    """ember's W4A8_AWQ format (weight_scale read as group amax / 7, FP8 re-rounding by weight_scale_2, FP8
    activations) on ModelOpt's export reproduces ModelOpt's fake-quant logits."""
    from ember.evaluation import PrefillRunner
    from ember.loader.build import load_model

    ref, mo_dir = modelopt_w4a8
    model = load_model(mo_dir, torch.float32, "cpu")
    assert model.model.layers[0].mlp.down_proj.format.quant_algo == "W4A8_AWQ"
    runner = PrefillRunner(model, max_seqs=1, max_len=TEST_IDS.shape[1])
    with torch.no_grad():
        got = model.compute_logits(runner.hidden([TEST_IDS[0].tolist()])[0])
    # measured 3e-7; reading weight_scale without the FP8 stage gives 0.11, skipping the FP8 activations 0.06
    assert float((got - ref).abs().max() / ref.abs().max()) < 1e-4


def test_w4a8_checkpoint_generates_with_llm(tiny_q_dir, qopts, tmp_path):
    from ember import LLM, SamplingParams
    from ember.quantization.linear import QuantLinear
    from ember.quantization.workbench import quantize

    out = tmp_path / "w4a8"
    r = quantize(tiny_q_dir, "w4a8-awq", out, qopts(recipe_options={"grid": 4, "group_size": 64}))
    assert json.loads((out / "hf_quant_config.json").read_text())["quantization"]["group_size"] == 64
    llm = LLM(out, device="cpu")
    qkv = llm.model.model.layers[0].self_attn.qkv_proj
    assert isinstance(qkv, QuantLinear) and qkv.format.quant_algo == "W4A8_AWQ" == r["quant_algo"]
    assert qkv.weight_scale.shape == (qkv.out_features, 128 // 64)
    text = llm.generate("w5 w6 w7", SamplingParams(max_tokens=8, temperature=0.0))[0].outputs[0]
    assert len(text.token_ids) == 8
