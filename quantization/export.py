"""Write a quantized checkpoint in ModelOpt's unified Hugging Face format, atomically (temp dir + rename).

Layout (what `modelopt.torch.export.export_hf_checkpoint` writes, and vLLM / SGLang / TRT-LLM read):
`model.safetensors` (or `model-0000i-of-0000n.safetensors` shards + `model.safetensors.index.json` past
`max_shard_size`, as `save_pretrained` splits them) with per-linear `weight` (packed), `weight_scale`, `weight_scale_2`, `input_scale`,
`pre_quant_scale`, and `self_attn.{k,v}_proj.{k,v}_scale` for an FP8 KV cache; `hf_quant_config.json`;
`config.json` with `quantization_config` (quant_method "modelopt"); the tokenizer files copied as they are.
Fused ember modules (qkv_proj, gate_up_proj) are split back into the checkpoint's q/k/v and gate/up names.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import split_torch_state_dict_into_shards
from safetensors.torch import save_file
from torch import nn

from ember.loader.quantized import checkpoint_names
from ember.quantization.formats import Format

PRODUCER = {"name": "modelopt", "version": "0.47.0"}  # readers key on the name; ember wrote it (see "ember")
SKIP_FILES = {"config.json", "hf_quant_config.json", "model.safetensors.index.json"}
MAX_SHARD_SIZE = "5GB"  # save_pretrained's split size for safetensors shards


class OutputExistsError(FileExistsError, ValueError):
    """The output directory exists and `force` was not given."""


def shard_tensors(module: nn.Module, fmt: Format | None, tensors: dict[str, torch.Tensor], shard: Any
                  ) -> dict[str, torch.Tensor]:
    """One checkpoint module's tensors out of a fused module's (`shard` None: the module is not fused)."""
    if shard is None:
        return {k: (v.reshape(()) if fmt and k in fmt.specs and fmt.specs[k].mode == "scalar" else v)
                for k, v in tensors.items()}
    start, size = module.shard_range(shard)
    idx = {"q": 0, "k": 1, "v": 2}.get(shard, shard) if isinstance(shard, str) else int(shard)
    out = {}
    for k, v in tensors.items():
        mode = fmt.specs[k].mode if fmt and k in fmt.specs else "rows"
        if mode == "scalar":
            out[k] = v[idx].reshape(())
        elif mode == "shared":
            out[k] = v.clone()
        elif mode == "rows2":
            out[k] = v.narrow(0, start // 2, size // 2).clone()
        else:
            out[k] = v.narrow(0, start, size).clone()
    return out


def build_state_dict(model: nn.Module, quantized: dict[str, dict[str, torch.Tensor]], fmt: Format | None,
                     dtype: torch.dtype, kv_scales: dict[str, torch.Tensor] | None = None
                     ) -> dict[str, torch.Tensor]:
    """Checkpoint-named tensors: quantized linears in `fmt`, everything else in `dtype`."""
    state: dict[str, torch.Tensor] = {}
    tied = getattr(model, "tie_word_embeddings", False)
    modules = dict(model.named_modules())
    for pname, param in model.named_parameters():
        if tied and pname == "lm_head.weight":
            continue
        module_name, _, leaf = pname.rpartition(".")
        module = modules[module_name]
        if module_name in quantized:
            if leaf != "weight":  # bias of a quantized linear: a plain tensor, sharded like the weight
                for ckpt, shard in checkpoint_names(model, module_name).items():
                    state[f"{ckpt}.{leaf}"] = shard_tensors(module, None, {leaf: param.data}, shard)[leaf].to(dtype)
                continue
            for ckpt, shard in checkpoint_names(model, module_name).items():
                for k, v in shard_tensors(module, fmt, quantized[module_name], shard).items():
                    state[f"{ckpt}.{k}"] = v
            continue
        names = checkpoint_names(model, module_name) if hasattr(module, "output_sizes") else {module_name: None}
        for ckpt, shard in names.items():
            state[f"{ckpt}.{leaf}"] = shard_tensors(module, None, {leaf: param.data}, shard)[leaf].to(dtype)
    for k, v in (kv_scales or {}).items():
        state[k] = v.float().reshape(())
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def quant_metadata(quant: dict[str, Any], exclude: list[str], kv_cache: str | None) -> tuple[dict, dict]:
    """(hf_quant_config.json, config.json quantization_config) as ModelOpt 0.47 writes them."""
    hf = {"producer": {**PRODUCER, "writer": "ember"},
          "quantization": {**quant, "kv_cache_quant_algo": kv_cache.upper() if kv_cache else None,
                           "exclude_modules": exclude}}
    cfg: dict[str, Any] = {}
    if quant["quant_algo"] == "FP8":
        fp8 = {"dynamic": False, "num_bits": 8, "type": "float"}
        cfg["config_groups"] = {"group_0": {"input_activations": fp8, "weights": fp8, "targets": ["Linear"]}}
    if kv_cache:
        cfg["kv_cache_scheme"] = {"dynamic": False, "num_bits": 8, "type": "float"}
    cfg.update(ignore=exclude, **{k: v for k, v in quant.items()}, producer=hf["producer"], quant_method="modelopt")
    return hf, cfg


def save_sharded(state: dict[str, torch.Tensor], folder: Path, max_shard_size: int | str | None = None) -> None:
    """`model.safetensors`, or shards + index past `max_shard_size` (default MAX_SHARD_SIZE; huggingface_hub's
    split, HF's file names)."""
    split = split_torch_state_dict_into_shards(state, max_shard_size=max_shard_size or MAX_SHARD_SIZE)
    for filename, names in split.filename_to_tensors.items():
        save_file({n: state[n] for n in names}, str(folder / filename), metadata={"format": "pt"})
    if split.is_sharded:
        index = {"metadata": split.metadata, "weight_map": split.tensor_to_filename}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")


def write_checkpoint(output: str | Path, source: str | Path, state: dict[str, torch.Tensor],
                     hf_quant_config: dict, quantization_config: dict, force: bool = False,
                     max_shard_size: int | str | None = None) -> Path:
    """Write the folder atomically: everything lands in a temp dir beside `output`, then one rename."""
    output, source = Path(output), Path(source)
    if output.exists() and not force:
        raise OutputExistsError(f"{output} already exists; pass --force (force=True) to replace it")
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        for f in source.iterdir():
            if f.is_file() and f.name not in SKIP_FILES and not f.name.endswith(".safetensors") \
                    and not f.name.startswith("."):
                shutil.copy2(f, tmp / f.name)
        config = json.loads((source / "config.json").read_text())
        config["quantization_config"] = quantization_config
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        (tmp / "hf_quant_config.json").write_text(json.dumps(hf_quant_config, indent=4) + "\n")
        save_sharded(state, tmp, max_shard_size)
        if output.exists():  # force: move the old one aside first, so a crash never leaves neither
            old = Path(tempfile.mkdtemp(prefix=f".{output.name}.old-", dir=output.parent))
            output.rename(old / output.name)
            tmp.rename(output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output
