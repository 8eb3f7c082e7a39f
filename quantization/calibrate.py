"""Calibration: run ember's own forward over token windows and record each target linear's input statistics.

`calibrate` hooks every target in one pass over the full-precision model. `calibrate_sequential` goes decoder layer
by layer, as GPTQ, llm-compressor and ModelOpt's sequential calibration do: the layer-0 inputs of every batch are
captured once; each layer then runs on the cached hidden states, its linears are quantized one after another (each
fed the already quantized ones before it), and the quantized layer's outputs become the next layer's inputs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from ember.evaluation import PrefillRunner
from ember.layers.attention import Attention
from ember.quantization.recipe import LayerStats, RecipeError

KVAmax = dict[int, tuple[float, float]]


class _Collector:
    def __init__(self, keep_rows: int, seed: int, hessian: bool = False) -> None:
        self.amax = self.channel_amax = self.channel_sum = None
        self.count, self.keep_rows = 0, keep_rows
        self.rows: list[torch.Tensor] = []
        self.gen = torch.Generator().manual_seed(seed)
        self.want_hessian, self.hessian = hessian, None

    def __call__(self, module: nn.Module, args: tuple) -> None:
        x = args[0].detach().reshape(-1, args[0].shape[-1]).float()  # [T, K]
        a = x.abs()
        cmax, csum = a.amax(0), a.sum(0)
        self.channel_amax = cmax if self.channel_amax is None else torch.maximum(self.channel_amax, cmax)
        self.channel_sum = csum if self.channel_sum is None else self.channel_sum + csum
        if self.want_hessian:  # running mean H = 2/n sum x^T x in fp32, as the GPTQ reference keeps it
            n = self.count + x.shape[0]
            if self.hessian is None:
                self.hessian = torch.zeros(x.shape[1], x.shape[1], dtype=torch.float32, device=x.device)
            self.hessian.mul_(self.count / n).addmm_(x.T, x, alpha=2.0 / n)
        self.count += x.shape[0]
        if self.keep_rows:
            idx = torch.randperm(x.shape[0], generator=self.gen)[: max(1, self.keep_rows // 8)]
            self.rows.append(x[idx.to(x.device)].cpu())

    def stats(self) -> LayerStats:
        sample = torch.cat(self.rows)[: self.keep_rows] if self.rows else None
        return LayerStats(amax=self.channel_amax.max(), channel_amax=self.channel_amax.cpu(),
                          channel_mean=(self.channel_sum / max(self.count, 1)).cpu(), sample=sample,
                          hessian=self.hessian)


def _kv_hook(kv: KVAmax) -> Callable:
    def hook(module: Attention, args: tuple) -> None:  # k, v after rotary, as the cache stores them
        k, v = float(args[1].abs().max()), float(args[2].abs().max())
        old = kv.get(module.layer_idx, (0.0, 0.0))
        kv[module.layer_idx] = (max(old[0], k), max(old[1], v))
    return hook


@torch.no_grad()
def calibrate(model: nn.Module, targets: dict[str, nn.Module], batches: torch.Tensor, batch_size: int,
              keep_rows: int = 0, kv_cache: bool = False, progress: Callable | None = None, hessian: bool = False
              ) -> tuple[dict[str, LayerStats], KVAmax]:
    """batches [N, S] token ids -> (per-layer LayerStats, {layer_idx: (k amax, v amax)} when `kv_cache`).

    `keep_rows` > 0 keeps that many random input rows per layer for search-based recipes; `hessian` accumulates
    H = 2/n sum x^T x over every calibration token of each layer.
    """
    collectors = {name: _Collector(keep_rows, i, hessian) for i, name in enumerate(targets)}
    hooks = [m.register_forward_pre_hook(collectors[n]) for n, m in targets.items()]
    kv: KVAmax = {}
    if kv_cache:
        hooks += [m.register_forward_pre_hook(_kv_hook(kv)) for m in model.modules() if isinstance(m, Attention)]
    try:
        runner = PrefillRunner(model, max_seqs=batch_size, max_len=batches.shape[1])
        for i in range(0, batches.shape[0], batch_size):
            runner.hidden([row.tolist() for row in batches[i:i + batch_size]])
            if progress:
                progress(min(batch_size, batches.shape[0] - i))
    finally:
        for h in hooks:
            h.remove()
    return {n: c.stats() for n, c in collectors.items() if c.count}, kv


# -- sequential (layer by layer) calibration ---------------------------------------------------------------------

class _Stop(Exception):
    """Raised in a hook to end a forward once what it needed has run."""


def decoder_layers(model: nn.Module, targets: dict[str, nn.Module]) -> nn.ModuleList:
    """The ModuleList of decoder layers that holds every target (`model.model.layers` in the built-in families)."""
    best: tuple[int, nn.ModuleList] | None = None
    for m in model.modules():
        if isinstance(m, nn.ModuleList) and len(m):
            inside = {id(t) for t in m.modules()}
            n = sum(id(t) in inside for t in targets.values())
            if n and (best is None or n > best[0]):
                best = (n, m)
    if best is None or best[0] < len(targets):
        inside = set() if best is None else {id(t) for t in best[1].modules()}
        outside = [n for n, t in targets.items() if id(t) not in inside]
        raise RecipeError(f"sequential calibration quantizes the linears of the decoder layers only, and "
                          f"{outside[0]} is outside them: exclude it with --exclude, or pass --recipe-option "
                          "sequential=false")
    return best[1]


def _is_atom(v: object) -> bool:
    """Values passed to every layer as they are (never per batch): None, numbers, strings, modules."""
    return v is None or isinstance(v, (bool, int, float, str, nn.Module))


def _flat(args: tuple, kwargs: dict) -> dict:
    return {**{i: a for i, a in enumerate(args)}, **kwargs}


def _plan(i: int, args: tuple, kwargs: dict, prev_out: tuple, first: dict) -> dict:
    """How layer i's call arguments derive from layer i-1's outputs ("out", j), layer 0's arguments ("arg0", key)
    or stay the same for every batch ("const", value)."""
    plan = {}
    for key, v in _flat(args, kwargs).items():
        if _is_atom(v):
            plan[key] = ("const", v)
            continue
        j = next((j for j, o in enumerate(prev_out) if o is v), None)
        k0 = next((k for k, a in first.items() if a is v), None)
        if j is None and k0 is None:
            raise RecipeError(f"sequential calibration cannot replay decoder layer {i}: its argument {key!r} is "
                              "built by the model's forward for that layer alone; pass --recipe-option "
                              "sequential=false")
        plan[key] = ("out", j) if j is not None else ("arg0", k0)
    return plan


def _call(layer: nn.Module, flat: dict) -> tuple:
    n = sum(isinstance(k, int) for k in flat)
    out = layer(*(flat[i] for i in range(n)), **{k: v for k, v in flat.items() if not isinstance(k, int)})
    return out if isinstance(out, tuple) else (out,)


def _replay_args(plan: dict | None, first: dict, prev_out: tuple | None) -> dict:
    if plan is None:  # layer 0
        return first
    src = {"out": lambda j: prev_out[j], "arg0": lambda k: first[k], "const": lambda v: v}
    return {key: src[kind](ref) for key, (kind, ref) in plan.items()}


@torch.no_grad()
def calibrate_sequential(model: nn.Module, targets: dict[str, nn.Module], batches: torch.Tensor, batch_size: int,
                         quantize: Callable[[str, LayerStats], torch.Tensor], keep_rows: int = 0,
                         hessian: bool = False, kv_cache: bool = False, progress: Callable | None = None) -> KVAmax:
    """Quantize `targets` layer by layer. `quantize(name, stats)` quantizes one linear and returns the dense weight
    [N, K] it runs with from then on (its dequantized weight); it is swapped in while the rest of the layer
    calibrates and the layer computes the next layer's inputs, then the original weight goes back. Returns
    {layer_idx: (k amax, v amax)} of the quantized model when `kv_cache`. `progress(1)` after each decoder layer."""
    layers = decoder_layers(model, targets)
    runner = PrefillRunner(model, max_seqs=batch_size, max_len=batches.shape[1])
    seqs = [[row.tolist() for row in batches[i:i + batch_size]] for i in range(0, batches.shape[0], batch_size)]

    # 1. one full-precision forward of the first batch: each layer's argument plan and its linears' call order
    index = {id(layer): i for i, layer in enumerate(layers)}
    plans: list[dict] = []
    order: list[str] = []
    seen: dict = {}

    def pre(layer: nn.Module, args: tuple, kwargs: dict) -> None:
        i = index[id(layer)]
        if i == 0:
            seen["first"] = _flat(args, kwargs)
        else:
            plans.append(_plan(i, args, kwargs, seen["out"], seen["first"]))

    def post(layer: nn.Module, args: tuple, kwargs: dict, out: object) -> None:
        seen["out"] = out if isinstance(out, tuple) else (out,)

    hooks = [layer.register_forward_pre_hook(pre, with_kwargs=True) for layer in layers]
    hooks += [layer.register_forward_hook(post, with_kwargs=True) for layer in layers]
    hooks += [m.register_forward_pre_hook(lambda m, a, n=n: order.append(n) if n not in order else None)
              for n, m in targets.items()]
    try:
        runner.hidden(seqs[0])
    finally:
        for h in hooks:
            h.remove()
    missing = [n for n in targets if n not in order]
    if missing:
        raise RecipeError(f"layer {missing[0]} saw no calibration data (is it reachable in forward?)")
    seen.clear()

    # 2. layer-0 arguments of every batch (the forward stops there)
    firsts: list[dict] = []

    def capture(layer: nn.Module, args: tuple, kwargs: dict) -> None:
        firsts.append(_flat(args, kwargs))
        raise _Stop

    hook = layers[0].register_forward_pre_hook(capture, with_kwargs=True)
    try:
        for batch in seqs:
            try:
                runner.hidden(batch)
            except _Stop:
                pass
    finally:
        hook.remove()
    used = {ref for p in plans for kind, ref in p.values() if kind == "arg0"}

    # 3. layer by layer: quantize its linears in call order, then run the quantized layer for the next one's inputs
    kv: KVAmax = {}
    outs: list[tuple] | None = None
    for i, layer in enumerate(layers):
        plan = plans[i - 1] if i else None
        inputs = [_replay_args(plan, first, outs[b] if outs else None) for b, first in enumerate(firsts)]
        inside = {id(m) for m in layer.modules()}
        originals: dict[str, torch.Tensor] = {}
        hooks = []
        try:
            for name in (n for n in order if id(targets[n]) in inside):
                module, collector = targets[name], _Collector(keep_rows, len(originals), hessian)

                def stop_after(m: nn.Module, args: tuple, c: _Collector = collector) -> None:
                    c(m, args)
                    raise _Stop  # why: nothing after this linear matters for its statistics

                hooks = [module.register_forward_pre_hook(stop_after)]
                for flat in inputs:
                    try:
                        _call(layer, flat)
                    except _Stop:
                        pass
                hooks.pop().remove()
                dense = quantize(name, collector.stats())
                originals[name] = module.weight.data
                module.weight.data = dense.to(module.weight.dtype)
            hooks = [m.register_forward_pre_hook(_kv_hook(kv)) for m in layer.modules()
                     if kv_cache and isinstance(m, Attention)]
            outs = [_call(layer, flat) for flat in inputs]
        finally:
            for h in hooks:
                h.remove()
            for name, w in originals.items():
                targets[name].weight.data = w
        if i == 0:  # the cached layer-0 hidden states are not needed any more: keep what later plans read
            firsts = [{k: v for k, v in first.items() if k in used} for first in firsts]
        del inputs
        if progress:
            progress(1)
    return kv
