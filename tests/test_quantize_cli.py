"""`ember quantize` and `ember eval ppl` through the CLI entry point on the tiny model."""

from __future__ import annotations

import json
import random

import pytest


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    from ember.models.llama import LlamaForCausalLM
    from ember.plugins import get_plugin_manager, get_registry
    from ember.plugins.testing import tiny_checkpoint
    import ember.quantization.plugin as plugin

    if ("quant_recipe", "fp8") not in get_registry() and ("calib_dataset", "lee-news") not in get_registry():
        get_plugin_manager().add_plugin(plugin, name="ember-quantization", distribution="ember")
    root = tmp_path_factory.mktemp("cli-q")
    tiny_checkpoint("LlamaForCausalLM", root / "model",
                    {**LlamaForCausalLM.tiny_config, "hidden_size": 128, "intermediate_size": 256})
    rng = random.Random(0)
    (root / "words.txt").write_text("\n\n".join(" ".join(f"w{rng.randint(3, 319)}" for _ in range(200))
                                                for _ in range(50)))
    return root


def test_quantize_cli_writes_checkpoint_report_and_summary(cli_model, capsys):
    from ember.cli.main import main

    out, words = cli_model / "fp8-out", str(cli_model / "words.txt")
    argv = ["quantize", "--model", str(cli_model / "model"), "--method", "fp8", "--calib", words,
            "--calib-size", "8", "--calib-seq-len", "64", "--eval-dataset", words, "--eval-windows", "4",
            "--eval-seq-len", "64", "--kv-cache", "fp8", "--output", str(out), "--quiet"]
    assert main(argv) == 0
    shown = capsys.readouterr().out
    assert "perplexity" in shown and "size on disk" in shown
    report = json.loads((out / "report.json").read_text())
    assert report["quant_algo"] == "FP8" and report["ppl_after"] > 0 and report["layers"]
    md = (out / "report.md").read_text()
    assert "| perplexity" in md and "rel. weight error" in md
    assert (out / "layer_error.png").exists()
    assert json.loads((out / "hf_quant_config.json").read_text())["quantization"]["kv_cache_quant_algo"] == "FP8"
    assert main(argv) == 2  # exists, no --force
    assert "--force" in capsys.readouterr().err

    assert main(["eval", "ppl", "--model", str(out), "--dataset", words, "--windows", "4", "--seq-len", "64",
                 "--json"]) == 0
    ppl = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ppl"]
    assert abs(ppl - report["ppl_after"]) / report["ppl_after"] < 1e-4  # the same measurement as the report's


def test_quantize_cli_unknown_method(cli_model, capsys):
    from ember.cli.main import main

    assert main(["quantize", "--model", str(cli_model / "model"), "--method", "awq9", "--calib", "lee-news"]) == 2
    err = capsys.readouterr().err
    assert "unknown quant recipe 'awq9'" in err and "int4-awq" in err
