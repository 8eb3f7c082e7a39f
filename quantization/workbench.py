"""`quantize`: model -> recipe over calibration data -> unified HF checkpoint + report (the `ember quantize` core)."""

from __future__ import annotations

import gc
import json
import resource
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ember.loader.quantized import checkpoint_names, target_linears
from ember.quantization.recipe import LayerStats, Recipe, RecipeError, fail_on_nonfinite, get_recipe


@dataclass
class QuantizeOptions:
    calib: str = "cnn_dailymail"
    calib_size: int = 512
    calib_seq_len: int = 512
    batch_size: int = 4
    kv_cache: str | None = None
    exclude: tuple[str, ...] = ()
    device: str = "cpu"
    force: bool = False
    eval_dataset: str | None = "wikipedia-sample"
    eval_windows: int = 16
    eval_seq_len: int = 512
    progress: bool = True
    recipe_options: dict[str, Any] = field(default_factory=dict)


def preflight(model: torch.nn.Module, recipe: Recipe) -> dict[str, torch.nn.Module]:
    """The target linears; a RecipeError naming every layer the recipe cannot take, before any work."""
    targets = target_linears(model, recipe.config.exclude, recipe.config.include_lm_head)
    if not targets:
        raise RecipeError(f"recipe {recipe.name!r}: no linear layer left to quantize (exclude patterns "
                          f"{list(recipe.config.exclude)} match them all)")
    bad = [(n, why) for n, m in targets.items() if (why := recipe.check_layer(n, m.out_features, m.in_features))]
    if bad:
        names = [", ".join(checkpoint_names(model, n)) for n, _ in bad]
        shown = "; ".join(f"{nm}: {why}" for nm, (_, why) in list(zip(names, bad))[:5])
        raise RecipeError(f"recipe {recipe.name!r} cannot quantize {len(bad)} layer(s): {shown}"
                          f"{' ...' if len(bad) > 5 else ''}. Skip them with --exclude, e.g. --exclude "
                          f"'{names[0].split(', ')[0]}'")
    return targets


def dir_size(path: Path) -> int:
    return sum(f.stat().st_size for f in Path(path).glob("*.safetensors"))


def param_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def peak_memory_mb(device: str) -> float:
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cuda_allocated(device: str) -> int | None:
    """Bytes of live tensors on the CUDA `device` (torch.cuda.memory_allocated); None off CUDA."""
    if not device.startswith("cuda") or not torch.cuda.is_available():
        return None
    gc.collect()   # why: garbage freed later (inside the load being measured) would make the difference too small
    torch.cuda.synchronize(device)
    return torch.cuda.memory_allocated(device)


def quantize(model: str | Path, method: str, output: str | Path, options: QuantizeOptions | None = None
             ) -> dict[str, Any]:
    """Quantize `model` (alias, dir, .gguf or repo id) with recipe `method`; returns the report (also written
    as report.json / report.md in `output`)."""
    from transformers import AutoTokenizer

    from ember.evaluation import perplexity
    from ember.loader.build import load_model
    from ember.loader.resolve import resolve_model
    from ember.quantization.calibrate import calibrate, calibrate_sequential, decoder_layers
    from ember.quantization.datasets import calibration_batches, load_texts
    from ember.quantization.export import OutputExistsError, build_state_dict, quant_metadata, write_checkpoint
    from ember.quantization.report import layer_error, write_report

    o = options or QuantizeOptions()
    if o.kv_cache not in (None, "fp8"):
        raise RecipeError(f"--kv-cache takes 'fp8', got {o.kv_cache!r}")
    recipe = get_recipe(method, exclude=tuple(o.exclude), kv_cache=o.kv_cache, **o.recipe_options)
    output = Path(output)
    if output.exists() and not o.force:
        raise OutputExistsError(f"{output} already exists; pass --force to replace it")
    if recipe.needs_calibration:
        load_texts(o.calib, "calib", limit=1)  # unknown dataset: fail now, listing the registered ones
    t0 = time.perf_counter()
    src = resolve_model(str(model))
    bar = tqdm(total=1, desc="load", disable=not o.progress)
    if cuda_allocated(o.device) is not None:
        torch.cuda.reset_peak_memory_stats(o.device)
    base = cuda_allocated(o.device)
    fp_model = load_model(src, torch.float32, o.device)
    gpu_before = None if base is None else cuda_allocated(o.device) - base
    tokenizer = AutoTokenizer.from_pretrained(str(src))
    bar.update(1), bar.close()
    if getattr(fp_model, "quant_config", None):
        raise RecipeError(f"{src} is already quantized ({fp_model.quant_config['quant_algo']}); start from the "
                          "full-precision checkpoint")
    targets = preflight(fp_model, recipe)
    report: dict[str, Any] = {"model": str(model), "source": str(src), "method": method,
                              "quant_algo": recipe.quant_algo, "config": vars(recipe.config) | {},
                              "calib": o.calib if recipe.needs_calibration else None,
                              "calib_size": o.calib_size, "calib_seq_len": o.calib_seq_len,
                              "kv_cache": o.kv_cache, "device": o.device, "load_s": time.perf_counter() - t0}
    ppl_kwargs = dict(seq_len=o.eval_seq_len, num_windows=o.eval_windows, split="eval", batch_size=o.batch_size,
                      device=o.device)
    if o.eval_dataset:
        report["ppl_before"] = perplexity(fp_model, o.eval_dataset, tokenizer, **ppl_kwargs).ppl

    quantized: dict[str, dict[str, torch.Tensor]] = {}
    errors: dict[str, dict[str, Any]] = {}
    spent = {"quantize": 0.0}
    ckpt_names = {n: ", ".join(checkpoint_names(fp_model, n)) for n in targets}

    def quantize_one(name: str, st: LayerStats | None) -> dict[str, torch.Tensor]:
        t = time.perf_counter()
        module = targets[name]
        w = module.weight.data.float()
        sizes = getattr(module, "output_sizes", [module.out_features])
        if recipe.needs_calibration and st is None:
            raise RecipeError(f"layer {name} saw no calibration data (is it reachable in forward?)")
        if st is not None:
            fail_on_nonfinite(name, {"activation amax": st.channel_amax})
            st = LayerStats(**{f.name: None if getattr(st, f.name) is None else getattr(st, f.name).to(w.device)
                               for f in fields(LayerStats)})  # calibrated on CPU or GPU
        tensors = recipe.quantize_layer(name, w, st, sizes)
        fail_on_nonfinite(name, tensors)
        quantized[name] = {k: v.detach() for k, v in tensors.items()}
        errors[name] = layer_error(name, ckpt_names[name], w, recipe.format, quantized[name], sizes)
        spent["quantize"] += time.perf_counter() - t
        return quantized[name]

    def quantize_dense(name: str, st: LayerStats) -> torch.Tensor:
        """Quantize one linear; the dense weight [N, K] the runtime will compute with (for sequential recipes)."""
        t = {k: v.clone() for k, v in quantize_one(name, st).items()}
        sizes = getattr(targets[name], "output_sizes", [targets[name].out_features])
        recipe.format.finalize(t, sizes)
        w = recipe.format.weight(t, sizes)
        return w * t["pre_quant_scale"].float()[None, :] if "pre_quant_scale" in t else w

    stats, kv = {}, {}
    t1 = time.perf_counter()
    if recipe.needs_calibration or o.kv_cache:
        batches = calibration_batches(tokenizer, o.calib, o.calib_size, o.calib_seq_len)
        keep_rows = recipe.config.sample_rows if recipe.needs_sample else 0
        if recipe.needs_calibration and recipe.sequential:
            layers = len(decoder_layers(fp_model, targets))
            with tqdm(total=layers, desc=f"{recipe.name} (sequential)", unit="layer", disable=not o.progress) as lbar:
                kv = calibrate_sequential(fp_model, targets, batches, o.batch_size, quantize_dense, keep_rows,
                                          recipe.needs_hessian, bool(o.kv_cache), progress=lbar.update)
        else:
            with tqdm(total=len(batches), desc="calibrate", unit="seq", disable=not o.progress) as cbar:
                stats, kv = calibrate(fp_model, targets if recipe.needs_calibration else {}, batches,
                                      o.batch_size, keep_rows=keep_rows, kv_cache=bool(o.kv_cache),
                                      progress=cbar.update, hessian=recipe.needs_hessian)
    report["calibration_s"] = time.perf_counter() - t1 - spent["quantize"]

    for name in tqdm([n for n in targets if n not in quantized], desc="quantize", unit="layer",
                     disable=not o.progress or len(quantized) == len(targets)):
        quantize_one(name, stats.get(name))
    errors_in_order = [errors[n] for n in targets]
    report["quantize_s"] = time.perf_counter() - t1 - report["calibration_s"]

    kv_scales = {}
    if o.kv_cache:
        from ember.layers.attention import Attention

        for mname, m in fp_model.named_modules():
            if isinstance(m, Attention) and m.layer_idx in kv:
                prefix = mname.rpartition(".")[0]
                kv_scales[f"{prefix}.k_proj.k_scale"] = torch.tensor(max(kv[m.layer_idx][0], 1e-6) / 448.0)
                kv_scales[f"{prefix}.v_proj.v_scale"] = torch.tensor(max(kv[m.layer_idx][1], 1e-6) / 448.0)
        fail_on_nonfinite("kv cache", kv_scales)

    config = json.loads((Path(src) / "config.json").read_text())
    dtype = getattr(torch, str(config.get("torch_dtype") or config.get("dtype") or "float32"), torch.float32)
    exclude = ["lm_head"] if not recipe.config.include_lm_head else []
    exclude += [n for n, m in fp_model.named_modules() if isinstance(m, torch.nn.Embedding)]
    for n, m in fp_model.named_modules():
        if n in targets or n == "lm_head" or not hasattr(m, "in_features") or not isinstance(m, torch.nn.Linear):
            continue
        exclude += list(checkpoint_names(fp_model, n))
    hf_cfg, q_cfg = quant_metadata(recipe.hf_quant_config(), exclude, o.kv_cache)
    t2 = time.perf_counter()
    with tqdm(total=1, desc="export", disable=not o.progress) as ebar:
        state = build_state_dict(fp_model, quantized, recipe.format, dtype, kv_scales)
        write_checkpoint(output, src, state, hf_cfg, q_cfg, force=o.force)
        ebar.update(1)
    report["export_s"] = time.perf_counter() - t2
    report.update(size_before_bytes=dir_size(Path(src)), size_after_bytes=dir_size(output),
                  layers=errors_in_order, peak_memory_mb=peak_memory_mb(o.device), output=str(output))
    # parameter bytes everywhere (on CPU the fallback also caches each dequantized weight: QuantLinear._dense)
    report["weights_memory_before_bytes"] = param_bytes(fp_model)
    targets.clear()  # free the fp32 model (and what was exported) before the reload
    quantized.clear()
    del fp_model, state, stats
    base = cuda_allocated(o.device)
    qmodel = load_model(output, torch.float32, o.device)
    report["weights_memory_after_bytes"] = param_bytes(qmodel)
    if base is not None:  # measured: everything the loaded model holds on the GPU (parameters, buffers, caches)
        report.update(gpu_memory_allocated_before_bytes=gpu_before,
                      gpu_memory_allocated_after_bytes=cuda_allocated(o.device) - base,
                      gpu_memory_peak_bytes=torch.cuda.max_memory_allocated(o.device))
    if o.eval_dataset:
        report["ppl_after"] = perplexity(qmodel, o.eval_dataset, tokenizer, **ppl_kwargs).ppl
        report["eval"] = {"dataset": o.eval_dataset, "windows": o.eval_windows, "seq_len": o.eval_seq_len}
    report["total_s"] = time.perf_counter() - t0
    write_report(output, report)
    return report
