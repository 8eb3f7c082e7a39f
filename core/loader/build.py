"""Build an ember model from a local Hugging Face checkpoint folder: config -> registry class -> meta -> weights."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoConfig, PretrainedConfig

from ember.loader.quantized import quantized_weights, read_quant_config, swap_quant_linears_
from ember.loader.weights import CheckpointError, SafetensorsCheckpoint
from ember.model_base import CausalLM
from ember.plugins import get_registry


class UnsupportedArchitectureError(ValueError):
    """The checkpoint's architecture has no registered model plugin."""


def load_config(path: str | Path, trust_remote_code: bool = False) -> PretrainedConfig:
    """The Hugging Face config of a local checkpoint folder."""
    return AutoConfig.from_pretrained(str(path), trust_remote_code=trust_remote_code)


def model_class_for(config: PretrainedConfig) -> type[CausalLM]:
    """The registered CausalLM class for `config.architectures[0]`."""
    registry = get_registry()
    known = registry.names("model")
    archs = getattr(config, "architectures", None) or []
    if not archs or archs[0] not in known:
        found = repr(archs[0]) if archs else "none (config.json has no 'architectures')"
        raise UnsupportedArchitectureError(
            f"unsupported architecture {found}; registered architectures: {', '.join(known) or '(none)'}. "
            "To add one, write a model plugin: see docs/plugins.md")
    return registry.load("model", archs[0])


def build_model(config: PretrainedConfig, dtype: torch.dtype, device: str | torch.device) -> CausalLM:
    """An uninitialised model of the config's architecture on `device`, in `dtype` (built on meta, no init cost)."""
    cls = model_class_for(config)
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # floating params and buffers are created in `dtype`
    try:
        with torch.device("meta"):
            model = cls(config)
    finally:
        torch.set_default_dtype(previous)
    return model.materialize_(device)


def load_model(path: str | Path, dtype: torch.dtype, device: str | torch.device,
               trust_remote_code: bool = False) -> CausalLM:
    """Build the checkpoint's architecture and load its safetensors weights; returns the model in eval mode."""
    config = load_config(path, trust_remote_code=trust_remote_code)
    model = build_model(config, dtype, device)
    checkpoint = SafetensorsCheckpoint(path)
    qconfig = read_quant_config(path)  # metadata decides; file names never do
    swapped = swap_quant_linears_(model, qconfig, dtype, device) if qconfig and qconfig["quant_algo"] else {}
    try:
        model.load_weights(quantized_weights(model, checkpoint, swapped) if qconfig else checkpoint)
        for name, module in swapped.items():
            try:
                module.finalize_()
            except ValueError as exc:
                raise CheckpointError(f"{name}: {exc}") from exc
    except CheckpointError as exc:
        if exc.file is not None:
            raise
        file = checkpoint.file_of(exc.tensor) if exc.tensor else None
        raise CheckpointError(exc.message, file=checkpoint.path / file if file else checkpoint.path,
                              tensor=exc.tensor) from exc
    model.quant_config = qconfig
    return model.eval()
