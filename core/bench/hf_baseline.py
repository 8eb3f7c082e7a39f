"""The transformers `generate` baseline on the same architecture (random weights), for the ratio in `ember bench`."""

from __future__ import annotations

import time
from typing import Any

import torch

from ember.bench.datasets import BenchRequest


def build_hf_model(config, dtype: torch.dtype, device: torch.device, seed: int = 0):
    """transformers' model of the config with random weights, built on `device`."""
    from transformers import AutoModelForCausalLM

    from ember.bench.model import init_random_

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype)
    model.to_empty(device=device)
    init_random_(model, seed=seed)
    for m in model.modules():   # rotary inv_freq buffers were left empty on meta: recompute them
        if hasattr(m, "rope_init_fn") and hasattr(m, "inv_freq"):
            inv_freq, _ = m.rope_init_fn(m.config, device)
            m.inv_freq.copy_(inv_freq)
    if getattr(config, "tie_word_embeddings", False):
        model.tie_weights()
    return model.eval()


@torch.inference_mode()
def hf_generate(model, requests: list[BenchRequest], batch_size: int, device: torch.device) -> dict[str, Any]:
    """Greedy `generate` in static batches, as transformers runs a workload: prompts left-padded to the longest in
    the batch (attention mask), every row decoding until the batch's longest output. Throughput counts the tokens
    the requests asked for (`output_len` each), not the rows' extra steps, so varied-length workloads (ShareGPT)
    measure what HF delivers on them; fixed lengths pad nothing and waste nothing."""
    useful, t0 = 0, time.perf_counter()
    for i in range(0, len(requests), batch_size):
        chunk = requests[i:i + batch_size]
        width = max(len(r.prompt_ids) for r in chunk)
        ids = torch.tensor([[0] * (width - len(r.prompt_ids)) + list(r.prompt_ids) for r in chunk], device=device)
        mask = torch.tensor([[0] * (width - len(r.prompt_ids)) + [1] * len(r.prompt_ids) for r in chunk],
                            device=device)
        new = max(r.output_len for r in chunk)
        model.generate(ids, attention_mask=mask, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                       pad_token_id=0)
        useful += sum(r.output_len for r in chunk)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elapsed = time.perf_counter() - t0
    return {"engine": "hf", "num_requests": len(requests), "batch_size": batch_size, "elapsed_s": elapsed,
            "output_tokens": useful, "output_tokens_per_s": useful / elapsed}
