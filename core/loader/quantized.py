"""Quantized checkpoints: read `hf_quant_config.json` / `config.json` `quantization_config` and swap linears.

The decision comes from checkpoint metadata only: which `quant_algo`, which modules are excluded. Model files
stay scheme-agnostic; their plain linears are replaced by `QuantLinear`s before the weights stream in.
"""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ember.layers.attention import Attention
from ember.layers.linear import Linear
from ember.loader.weights import CheckpointError
from ember.model_base import CausalLM

KV_SCALE_SUFFIXES = (".k_scale", ".v_scale")


def read_quant_config(path: str | Path) -> dict[str, Any] | None:
    """{"quant_algo", "group_size", "exclude_modules", "kv_cache_quant_algo"} of a ModelOpt-style checkpoint, or
    None for an unquantized one. `hf_quant_config.json` wins; `config.json` `quantization_config` (quant_method
    "modelopt") is read otherwise."""
    path = Path(path)
    hf = path / "hf_quant_config.json"
    if hf.exists():
        q = json.loads(hf.read_text()).get("quantization", {})
    else:
        cfg_file = path / "config.json"
        q = json.loads(cfg_file.read_text()).get("quantization_config") if cfg_file.exists() else None
        if not q:
            return None
        if q.get("quant_method") != "modelopt":
            raise ValueError(f"{path}: quantization_config quant_method {q.get('quant_method')!r} is not supported "
                             "by ember (it reads ModelOpt's unified format: quant_method 'modelopt')")
        q = {**q, "exclude_modules": q.get("exclude_modules", q.get("ignore", []))}
    if not q.get("quant_algo") and not q.get("kv_cache_quant_algo"):
        return None
    return {"quant_algo": q.get("quant_algo"), "group_size": q.get("group_size"),
            "exclude_modules": list(q.get("exclude_modules") or []),
            "kv_cache_quant_algo": q.get("kv_cache_quant_algo")}


def checkpoint_names(model: CausalLM, module_name: str) -> dict[str, str | int | None]:
    """Checkpoint module names of one ember module: {"...q_proj": "q", ...} for fused ones, {name: None} else."""
    prefix, _, leaf = module_name.rpartition(".")
    shards = {f"{prefix}.{ckpt}" if prefix else ckpt: shard
              for ckpt, (packed, shard) in model.packed_modules_mapping.items() if packed == leaf}
    return shards or {module_name: None}


def is_excluded(names: Iterable[str], patterns: Iterable[str]) -> bool:
    patterns = list(patterns)
    return any(fnmatch.fnmatchcase(n, p) or fnmatch.fnmatchcase(n, p + ".*") for n in names for p in patterns)


def target_linears(model: CausalLM, exclude: Iterable[str] = (), include_lm_head: bool = False
                   ) -> dict[str, nn.Module]:
    """ember module name -> Linear that a scheme quantizes: every linear except lm_head and `exclude` matches
    (fnmatch on the checkpoint names; a fused module is skipped when any of its shards matches)."""
    exclude = list(exclude)
    out = {}
    for name, module in model.named_modules():
        if not isinstance(module, Linear) or (name == "lm_head" and not include_lm_head):
            continue
        if is_excluded(checkpoint_names(model, name), exclude):
            continue
        out[name] = module
    return out


def swap_quant_linears_(model: CausalLM, qconfig: dict[str, Any], dtype: torch.dtype,
                        device: torch.device | str) -> dict[str, nn.Module]:
    """Replace the checkpoint's quantized linears by QuantLinear modules (empty, ready for `load_weights`)."""
    from ember.quantization.formats import get_format
    from ember.quantization.linear import QuantLinear

    fmt = get_format(qconfig["quant_algo"], qconfig.get("group_size"))
    swapped = {}
    for name, module in target_linears(model, qconfig["exclude_modules"]).items():
        sizes = getattr(module, "output_sizes", [module.out_features])
        shard_names = {"q": 0, "k": 1, "v": 2} if hasattr(module, "q_size") else {}
        q = QuantLinear(fmt, module.in_features, sizes, module.bias is not None, dtype, device, shard_names)
        parent_name, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, leaf, q)
        swapped[name] = q
    return swapped


def quantized_weights(model: CausalLM, weights: Iterable[tuple[str, torch.Tensor]],
                      swapped: dict[str, nn.Module]) -> Iterator[tuple[str, torch.Tensor]]:
    """The checkpoint stream with KV-cache scales set aside (kept on `model.kv_cache_scales`, handed to the attention
    layers once the stream is exhausted) and optional tensors a checkpoint may omit (ModelOpt folds AWQ
    pre_quant_scale of q/k/v into the norm) filled with ones."""
    model.kv_cache_scales = {}
    seen: set[str] = set()
    for name, tensor in weights:
        if name.endswith(KV_SCALE_SUFFIXES):
            model.kv_cache_scales[name] = tensor.float()
            continue
        seen.add(name)
        yield name, tensor
    for module_name, q in swapped.items():
        for tensor_name, spec in q.format.specs.items():
            if not spec.optional:
                continue
            for ckpt in checkpoint_names(model, module_name):
                if f"{ckpt}.{tensor_name}" not in seen:
                    yield f"{ckpt}.{tensor_name}", torch.ones(q.in_features, dtype=spec.dtype)
    attach_kv_cache_scales_(model, model.kv_cache_scales)


def kv_scale_names(attention_name: str, which: str) -> tuple[str, str, str]:
    """Checkpoint names an Attention module's fp8 KV-cache scale may have (`which`: "k" or "v"): ModelOpt's and
    ember's `self_attn.k_proj.k_scale`, llm-compressor's `self_attn.k_scale`, vLLM's `self_attn.attn.k_scale`."""
    parent = attention_name.rpartition(".")[0]
    return f"{parent}.{which}_proj.{which}_scale", f"{parent}.{which}_scale", f"{attention_name}.{which}_scale"


def attach_kv_cache_scales_(model: CausalLM, scales: dict[str, torch.Tensor]) -> None:
    """Set each attention layer's k_scale / v_scale from the checkpoint's (layers without any keep 1.0)."""
    used: set[str] = set()
    for name, module in model.named_modules():
        if not isinstance(module, Attention):
            continue
        found = {w: next((n for n in kv_scale_names(name, w) if n in scales), None) for w in ("k", "v")}
        if found["k"] is None and found["v"] is None:
            continue
        if found["k"] is None or found["v"] is None:
            have, lack = ("k", "v") if found["v"] is None else ("v", "k")
            raise CheckpointError(f"{name}: the checkpoint has a {have}_scale but no {lack}_scale "
                                  f"(looked for {', '.join(kv_scale_names(name, lack))})", tensor=found[have])
        try:
            module.set_kv_scales_(scales[found["k"]], scales[found["v"]])
        except ValueError as exc:
            raise CheckpointError(str(exc), tensor=found["k"]) from exc
        used.update(found.values())
    unused = sorted(set(scales) - used)
    if unused:
        raise CheckpointError(f"KV-cache scales that match no attention layer: {', '.join(unused[:8])}"
                              + (f" ... ({len(unused)} in all)" if len(unused) > 8 else ""))
