"""The `ember` command line: help, models, plugins list, generate (tiny model and the real SmolLM2)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ember.cli.main import main

SUBCOMMANDS = [["generate"], ["models"], ["plugins"], ["plugins", "list"], ["bench"]]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_help_lists_subcommands(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    for name in ("generate", "models", "plugins", "bench", "examples:"):
        assert name in out


@pytest.mark.parametrize("argv", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_help_has_examples(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    out = capsys.readouterr().out
    assert info.value.code == 0
    assert "examples:" in out and f"ember {argv[0]}" in out


def test_no_subcommand_prints_help_and_exits_2(capsys):
    code, out, _ = run_cli(capsys)
    assert code == 2 and "COMMAND" in out


def test_models_lists_architectures_and_aliases(capsys):
    code, out, _ = run_cli(capsys, "models")
    assert code == 0
    for name in ("LlamaForCausalLM", "Qwen3MoeForCausalLM", "smollm2", "qwen3-moe", "Qwen/Qwen3-30B-A3B"):
        assert name in out
    code, out, _ = run_cli(capsys, "models", "--json")
    data = json.loads(out)
    aliases = {a["alias"]: a for a in data["aliases"]}
    assert aliases["smollm2"]["kind"] == "local" and aliases["qwen3"]["target"] == "Qwen/Qwen3-8B"
    assert "LlamaForCausalLM" in {a["architecture"] for a in data["architectures"]}


def test_plugins_list_json(capsys):
    code, out, _ = run_cli(capsys, "plugins", "list", "--json")
    assert code == 0
    data = json.loads(out)
    rows = {(c["kind"], c["name"]): c for c in data["components"]}
    llama = rows[("model", "LlamaForCausalLM")]
    assert llama["distribution"] == "ember" and llama["version"]
    assert ("attention_backend", "torch") in rows and ("model_alias", "smollm2") in rows
    assert {"ember-models", "ember-attention"} <= {p["name"] for p in data["plugins"]}
    assert data["failures"] == []


def test_plugins_list_table_and_kind_filter(capsys):
    code, out, _ = run_cli(capsys, "plugins", "list", "--kind", "attention_backend")
    assert code == 0
    assert out.splitlines()[0].split() == ["KIND", "NAME", "DISTRIBUTION", "VERSION"]
    assert "torch" in out and "LlamaForCausalLM" not in out
    code, _, err = run_cli(capsys, "plugins", "list", "--kind", "modle")
    assert code == 2 and "did you mean 'model'" in err


def test_unknown_model_is_one_line_exit_2(capsys):
    code, out, err = run_cli(capsys, "generate", "--model", "smolm2", "--prompt", "hi")
    assert code == 2
    assert err.count("\n") == 1 and "did you mean 'smollm2'" in err and "Traceback" not in err


def test_debug_shows_the_traceback():
    from ember.loader.resolve import ModelResolveError
    with pytest.raises(ModelResolveError):
        main(["--debug", "generate", "--model", "smolm2", "--prompt", "hi"])


def test_bad_option_value_exits_2(capsys):
    with pytest.raises(SystemExit) as info:
        main(["generate", "--model", "x", "--prompt", "hi", "--max-tokens", "0"])
    assert info.value.code == 2 and "must be >= 1" in capsys.readouterr().err


def test_generate_tiny_model_prints_text(capsys, tiny_llama_dir):
    code, out, err = run_cli(capsys, "generate", "--model", str(tiny_llama_dir), "--prompt", "w5 w9 w14",
                             "--max-tokens", "6")
    assert code == 0, err
    words = out.split()
    assert len(words) >= 3 and all(w.startswith("w") for w in words), out


def test_generate_chat_without_template_is_a_clear_error(capsys, tiny_llama_dir):
    code, _, err = run_cli(capsys, "generate", "--model", str(tiny_llama_dir), "--prompt", "w5", "--chat")
    assert code == 2 and "no chat template" in err


def test_console_script_streams_from_a_subprocess(tiny_llama_dir):
    proc = subprocess.run([sys.executable, "-c", "from ember.cli.main import main; raise SystemExit(main())",
                           "generate", "-m", str(tiny_llama_dir), "-p", "w7 w8", "--max-tokens", "4",
                           "--temperature", "0.7", "--top-k", "20", "--top-p", "0.9", "--seed", "3"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() and "Traceback" not in proc.stderr


# -- the acceptance test: the real SmolLM2, greedy, ember == transformers -------------------------------
PROMPTS = ["The capital of France is", "def fibonacci(n):", "Three things to pack for a beach holiday:"]


@pytest.mark.slow
def test_smollm2_greedy_matches_transformers(smollm2_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from ember import LLM, SamplingParams

    llm = LLM(str(smollm2_dir), dtype=torch.float32, device="cpu", max_num_seqs=4)
    outputs = llm.generate(PROMPTS, SamplingParams(temperature=0.0, max_tokens=16))
    hf = AutoModelForCausalLM.from_pretrained(smollm2_dir, dtype=torch.float32).eval()
    for prompt, out in zip(PROMPTS, outputs):
        ids = torch.tensor([out.prompt_token_ids])
        with torch.no_grad():
            want = hf.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=16,
                               do_sample=False)[0, ids.shape[1]:].tolist()
        got = list(out.outputs[0].token_ids)
        assert got == want, f"{prompt!r}: ember {got} != transformers {want}"
        assert len(got) == 16 and out.outputs[0].finish_reason == "length"
        assert out.outputs[0].text.strip()


@pytest.mark.slow
def test_ember_generate_smollm2_chat_streams(smollm2_dir):
    proc = subprocess.run(["ember", "generate", "--model", "smollm2", "--chat", "--prompt",
                           "What is the capital of France?", "--max-tokens", "12"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "Paris" in proc.stdout
