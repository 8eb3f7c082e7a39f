"""Bench models: bundled real-size configs, random weights built straight on the device, engines without tokenizers."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import torch
from transformers import AutoConfig, PretrainedConfig

from ember.config import EngineConfig
from ember.engine.llm_engine import LLMEngine


def bundled_configs() -> dict[str, str]:
    """Name -> JSON text of the real-size configs shipped in ember.models/configs (qwen3-8b, llama-3.1-8b, ...)."""
    root = resources.files("ember.models") / "configs"
    return {p.name.removesuffix(".json"): p.read_text() for p in root.iterdir() if p.name.endswith(".json")}


def load_bench_config(name: str) -> PretrainedConfig:
    """A bundled config by name (case-insensitive), or a path to a config.json / checkpoint folder."""
    from pathlib import Path

    configs = bundled_configs()
    key = name.lower()
    if key in configs:
        return AutoConfig.for_model(**json.loads(configs[key]))
    path = Path(name)
    if path.is_dir() and (path / "config.json").exists():
        path = path / "config.json"
    if path.is_file():
        return AutoConfig.for_model(**json.loads(path.read_text()))
    raise ValueError(f"--random-weights needs a bundled config ({', '.join(sorted(configs))}) or a path to a "
                     f"config.json; got {name!r}")


@torch.no_grad()
def init_random_(model: torch.nn.Module, std: float = 0.02, seed: int = 0) -> torch.nn.Module:
    """Fill every parameter in place on its device: matrices N(0, std), norm weights 1, biases 0 (speed does not
    depend on the values; uninitialised memory could hold NaNs)."""
    gen = torch.Generator(device=next(model.parameters()).device).manual_seed(seed)
    for name, p in model.named_parameters():
        if p.dim() >= 2:
            p.normal_(0.0, std, generator=gen)
        elif name.endswith("bias"):
            p.zero_()
        else:
            p.fill_(1.0)
    return model


def build_random_model(config: PretrainedConfig, dtype: torch.dtype, device: torch.device, seed: int = 0):
    """The config's ember architecture at full size with random weights, built on `device` (no disk)."""
    from ember.loader.build import build_model

    return init_random_(build_model(config, dtype, device), seed=seed).eval()


class NullTokenizer:
    """Stands in for a tokenizer when prompts are token ids: decodes to nothing (bench outputs are not read)."""

    def decode(self, ids: list[int], skip_special_tokens: bool = True) -> str:
        return ""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        raise ValueError("bench engines take token-id prompts only")


def make_engine(model: Any, config: EngineConfig, device: torch.device, dtype: torch.dtype,
                max_model_len: int) -> LLMEngine:
    return LLMEngine(model, NullTokenizer(), config, device, dtype, max_model_len, eos_token_ids=[])
