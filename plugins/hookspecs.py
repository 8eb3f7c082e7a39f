"""The hooks ember calls on plugins; each receives a `register` callable and never touches a registry itself."""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("ember")
hookimpl = pluggy.HookimplMarker("ember")

Register = Callable[..., None]


@hookspec
def ember_register_models(register: Register) -> None:
    """Register architectures: register("LlamaForCausalLM", "pkg.module:Class")."""


@hookspec
def ember_register_model_aliases(register: Register) -> None:
    """Register zoo aliases: register("smollm2", "pkg.module:resolve_fn" or "org/repo-id", description="...")."""


@hookspec
def ember_register_attention_backends(register: Register) -> None:
    """Register attention backends: register("torch", "pkg.module:Backend")."""


@hookspec
def ember_register_quant_recipes(register: Register) -> None:
    """Register quantization recipes: register("fp8", "pkg.module:Recipe")."""


@hookspec
def ember_register_draft_methods(register: Register) -> None:
    """Register speculative draft methods: register("ngram", "pkg.module:Drafter")."""


@hookspec
def ember_register_adapter_formats(register: Register) -> None:
    """Register LoRA adapter formats: register("peft", "pkg.module:Format")."""


@hookspec
def ember_register_calib_datasets(register: Register) -> None:
    """Register calibration / evaluation text sources: register("lee-news", "pkg.module:load")."""
