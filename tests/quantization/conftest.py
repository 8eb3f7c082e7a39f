"""Fixtures: a tiny random Llama whose dims fit group 128 (hidden 128), a word-level calibration text."""

from __future__ import annotations

import random

import pytest


@pytest.fixture(scope="session")
def tiny_q_dir(tmp_path_factory):
    """2-layer Llama, hidden 128, intermediate 256, GQA 4q/2kv, fp32 safetensors + word-level tokenizer."""
    from ember.models.llama import LlamaForCausalLM
    from ember.plugins.testing import tiny_checkpoint

    path = tmp_path_factory.mktemp("tiny-q")
    config = {**LlamaForCausalLM.tiny_config, "hidden_size": 128, "intermediate_size": 256}
    tiny_checkpoint("LlamaForCausalLM", path, config, initializer_range=0.05)
    return path


@pytest.fixture(scope="session")
def words_txt(tmp_path_factory):
    """50 documents of 200 random tokenizer words, separated by blank lines (calib and eval splits differ)."""
    rng = random.Random(0)
    path = tmp_path_factory.mktemp("text") / "words.txt"
    path.write_text("\n\n".join(" ".join(f"w{rng.randint(3, 319)}" for _ in range(200)) for _ in range(50)))
    return path


@pytest.fixture
def qopts(words_txt):
    """Fast QuantizeOptions over the word text: qopts(kv_cache="fp8", ...)."""
    from ember.quantization.workbench import QuantizeOptions

    def make(**kw):
        base = dict(calib=str(words_txt), calib_size=8, calib_seq_len=64, batch_size=4,
                    eval_dataset=str(words_txt), eval_windows=4, eval_seq_len=64, progress=False)
        return QuantizeOptions(**{**base, **kw})

    return make
