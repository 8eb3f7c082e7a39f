"""Quantization recipes: a name, a frozen config, which layers it touches, and the format its tensors take.

A recipe is a plugin (`ember_register_quant_recipes`): `register("fp8", "pkg.module:FP8Recipe")`. The
workbench calibrates, then calls `recipe.quantize_layer(name, weight, stats)` for every target linear and
writes what it returns in the recipe's `Format` (ember.quantization.formats), so ember, vLLM, SGLang and
TensorRT-LLM can all load it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch

from ember.plugins import get_registry
from ember.quantization.formats import Format, get_format

KIND = "quant_recipe"


class RecipeError(ValueError):
    """A recipe cannot run on this model / input; the message names the layer and what to do."""


@dataclass(frozen=True)
class RecipeConfig:
    """What every recipe accepts; subclass (frozen) to add knobs. `version` changes when outputs would."""

    version: int = 1
    exclude: tuple[str, ...] = ()        # fnmatch patterns over checkpoint module names ("*.down_proj")
    include_lm_head: bool = False
    kv_cache: str | None = None          # "fp8": also write k_scale / v_scale


@dataclass(frozen=True)
class GroupedConfig(RecipeConfig):
    """A recipe with group-wise weight scales: `group_size` overrides the recipe's default (`Recipe.group_size`)."""

    group_size: int = 0                  # 0: the recipe's default (64 suits SmolLM2's 576, which 128 does not divide)


@dataclass
class LayerStats:
    """Calibration statistics of one linear's input x [tokens, K] (see ember.quantization.calibrate)."""

    amax: torch.Tensor                   # [] max |x|
    channel_amax: torch.Tensor           # [K] max |x| per input channel
    channel_mean: torch.Tensor           # [K] mean |x| per input channel
    sample: torch.Tensor | None = None   # [S, K] a random subset of input rows (for search-based recipes)
    hessian: torch.Tensor | None = None  # [K, K] fp32 H = 2/n sum x^T x over every calibration token (GPTQ)


class Recipe:
    """Base class. Subclasses set `name`, `quant_algo`, optionally `group_size` (+ `group_sizes`),
    `needs_sample` / `needs_hessian`, `config_cls`, and implement `quantize_layer`."""

    name: ClassVar[str] = ""
    quant_algo: ClassVar[str] = ""
    group_size: ClassVar[int | None] = None
    group_sizes: ClassVar[tuple[int, ...] | None] = None  # the only valid `group_size` values (None: any that fits)
    needs_calibration: ClassVar[bool] = True   # False: weights only, no forward passes over calibration data
    needs_sample: ClassVar[bool] = False       # keep a sample of input rows per layer (AWQ-style searches)
    needs_hessian: ClassVar[bool] = False      # accumulate H = 2/n sum x^T x per layer over every calibration token
    config_cls: ClassVar[type[RecipeConfig]] = RecipeConfig
    description: ClassVar[str] = ""

    def __init__(self, config: RecipeConfig | None = None) -> None:
        self.config = config or self.config_cls()
        g = getattr(self.config, "group_size", 0)
        if g:
            self.group_size = self._checked_group_size(g)
        self.format: Format = get_format(self.quant_algo, self.group_size)

    def _checked_group_size(self, g: int) -> int:
        if not self.group_size:
            raise RecipeError(f"recipe {self.name!r} has no weight groups; drop the group_size option")
        if g < 0 or (self.group_sizes is not None and g not in self.group_sizes):
            valid = ", ".join(map(str, self.group_sizes)) if self.group_sizes else "a positive integer"
            raise RecipeError(f"recipe {self.name!r}: group_size {g} is not valid ({valid}); leave it unset for "
                              f"the default {self.group_size}")
        return g

    @property
    def sequential(self) -> bool:
        """Calibrate decoder layer by layer, each layer fed the outputs of the already quantized layers before it
        (GPTQ); recipes opt in with a `sequential` config field."""
        return bool(getattr(self.config, "sequential", False))

    @classmethod
    def parse_options(cls, pairs: list[str]) -> dict[str, Any]:
        """["alpha=0.8", "group_size=64"] -> typed config overrides (`--recipe-option`)."""
        fields = {f.name: f for f in cls.config_cls.__dataclass_fields__.values()}
        out: dict[str, Any] = {}
        for pair in pairs:
            key, _, value = pair.partition("=")
            key = key.replace("-", "_")
            if key not in fields or key in ("exclude", "kv_cache", "version"):
                known = sorted(set(fields) - {"exclude", "kv_cache", "version"})
                raise RecipeError(f"recipe {cls.name!r} has no option {key!r}; options: {', '.join(known)}")
            default = getattr(cls.config_cls(), key)
            out[key] = (value.lower() in ("1", "true", "yes")) if isinstance(default, bool) else type(default)(value)
        return out

    def check_layer(self, name: str, out_features: int, in_features: int) -> str | None:
        """Why this layer cannot be quantized (None when it can); checked on every target before any work."""
        g = self.group_size
        if g and in_features % g:
            return f"its input dim {in_features} is not divisible by the group size {g}"
        if self.format.specs["weight"].mode == "rows2" and out_features % 2:
            return f"its output dim {out_features} is odd (int4 packs two output rows per byte)"
        if self.format.specs["weight"].cols == "k/2" and in_features % 2:
            return f"its input dim {in_features} is odd (fp4 packs two values per byte)"
        return None

    def quantize_layer(self, name: str, weight: torch.Tensor, stats: LayerStats | None,
                       shard_rows: list[int]) -> dict[str, torch.Tensor]:
        """weight [N, K] fp32 (fused shards concatenated, sizes `shard_rows`) -> the format's tensors, with
        `scalar` tensors as [num_shards] and `shared` ones as [K]."""
        raise NotImplementedError

    def hf_quant_config(self) -> dict[str, Any]:
        """The `quantization` block of hf_quant_config.json (minus exclude_modules / kv_cache_quant_algo)."""
        q: dict[str, Any] = {"quant_algo": self.quant_algo}
        if self.group_size:
            q["group_size"] = self.group_size
        if "pre_quant_scale" in self.format.specs and self.quant_algo != "W8A8_SQ_PER_CHANNEL":
            q.update(has_zero_point=False, pre_quant_scale=True)
        return q


def recipe_names() -> list[str]:
    return get_registry().names(KIND)


def get_recipe(name: str, config: RecipeConfig | None = None, **overrides: Any) -> Recipe:
    """An instance of the registered recipe `name`; unknown names list the registered ones."""
    cls = get_registry().load(KIND, name)
    if config is None:
        config = cls.config_cls(**overrides)
    elif overrides:
        from dataclasses import replace

        config = replace(config, **overrides)
    return cls(config)


def fail_on_nonfinite(name: str, tensors: dict[str, torch.Tensor]) -> None:
    """Stop (naming the layer) when calibration produced NaN / inf scales."""
    for key, t in tensors.items():
        if t.dtype.is_floating_point and t.dtype != torch.float8_e4m3fn and not bool(torch.isfinite(t).all()):
            raise RecipeError(f"layer {name}: {key} holds NaN or inf (calibration produced a non-finite "
                              "activation or weight); nothing was written. Exclude the layer with --exclude, or "
                              "check the model in full precision first")
        if t.dtype == torch.float8_e4m3fn and bool(torch.isnan(t.float()).any()):
            raise RecipeError(f"layer {name}: {key} holds NaN; nothing was written")


__all__ = ["Recipe", "RecipeConfig", "GroupedConfig", "LayerStats", "RecipeError", "get_recipe", "recipe_names",
           "field"]
