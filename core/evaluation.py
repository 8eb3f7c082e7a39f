"""Perplexity of an ember CausalLM over token windows, run through ember's own paged-cache forward."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from ember.attention.kv_quant import is_fp8, resolve_kv_cache_dtype
from ember.attention.metadata import build_metadata
from ember.attention.torch_backend import TorchAttentionBackend
from ember.layers.attention import Attention
from ember.model_base import CausalLM


@dataclass(frozen=True)
class PerplexityResult:
    """ppl = exp(nll); nll is the mean negative log-likelihood (nats) over `tokens` scored targets."""

    ppl: float
    nll: float
    tokens: int
    windows: int


class PrefillRunner:
    """Runs whole sequences through a CausalLM in one varlen prefill over a private paged KV cache.

    `kv_cache_dtype` as EngineConfig's: "auto" scores with the fp8 cache a checkpoint declares, as the engine runs it.
    """

    def __init__(self, model: CausalLM, max_seqs: int, max_len: int, block_size: int = 16,
                 kv_cache_dtype: str = "auto") -> None:
        param = next(model.parameters())
        self.model, self.block_size, self.device = model, block_size, param.device
        self.backend = TorchAttentionBackend(param.device, param.dtype)
        layers = sorted((m for m in model.modules() if isinstance(m, Attention)), key=lambda m: m.layer_idx)
        kv_dtype = resolve_kv_cache_dtype(kv_cache_dtype, param.dtype, getattr(model, "quant_config", None))
        if is_fp8(kv_dtype):
            for m in layers:
                m.kv_scales_to_(param.device)
        num_blocks = max_seqs * -(-max_len // block_size) + 1
        self.kv_caches = [torch.zeros(2, num_blocks, block_size, m.num_kv_heads, m.head_dim,
                                      dtype=kv_dtype, device=param.device) for m in layers]
        self.num_blocks = num_blocks

    @torch.no_grad()
    def hidden(self, seqs: list[list[int]]) -> list[torch.Tensor]:
        """Each token list from position 0 -> its final hidden states [len, H] (the cache is reused per call)."""
        tables, next_block = [], 1  # block 0 stays unused: padded table entries never alias real data
        for s in seqs:
            n = -(-len(s) // self.block_size)
            tables.append(list(range(next_block, next_block + n)))
            next_block += n
        if next_block > self.num_blocks:
            raise ValueError(f"{len(seqs)} sequences of up to {max(map(len, seqs))} tokens exceed the runner's "
                             "cache; pass fewer or shorter sequences")
        lens = [len(s) for s in seqs]
        meta = build_metadata(self.backend, self.kv_caches, self.block_size, lens, lens, tables, self.device)
        ids = torch.tensor([t for s in seqs for t in s], dtype=torch.long, device=self.device)
        pos = torch.tensor([p for n in lens for p in range(n)], dtype=torch.long, device=self.device)
        return list(self.model(ids, pos, meta).split(lens))


def eval_windows(tokens: list[int], seq_len: int, num_windows: int | None, stride: int | None,
                 bos_id: int | None) -> list[tuple[list[int], int]]:
    """(window, first scored index) pairs over a token stream: windows of `seq_len` (BOS first when `bos_id` is
    given) every `stride` text tokens; a window scores only targets no earlier window scored."""
    body = seq_len - 1 if bos_id is not None else seq_len
    stride = body if stride is None else stride
    if not 0 < stride <= body:
        raise ValueError(f"stride must be in 1..{body}, got {stride}")
    out, scored_until, start = [], 0, 0
    while start + body <= len(tokens) and (num_windows is None or len(out) < num_windows):
        window = tokens[start:start + body]
        if bos_id is None:  # the window's first token has no context: never scored
            first = max(1, scored_until - start)
        else:  # every text token follows BOS at least
            window, first = [bos_id] + window, max(0, scored_until - start) + 1
        out.append((window, first))
        scored_until = start + body
        start += stride
    return out


@torch.no_grad()
def perplexity(model_or_path: CausalLM | str | Path, texts: list[str] | str, tokenizer: Any = None,
               seq_len: int = 512, num_windows: int | None = 16, stride: int | None = None,
               bos: bool | None = None, split: str = "eval", batch_size: int = 4,
               dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
               kv_cache_dtype: str = "auto") -> PerplexityResult:
    """Perplexity over the first `num_windows` windows of `seq_len` tokens of `texts`.

    `texts`: documents, or a dataset name / local file (its `split` documents, see
    `ember.quantization.datasets`), joined by blank lines into one token stream. `bos=None` starts every window
    with BOS exactly when the tokenizer adds BOS itself (Gemma needs it). Model paths load with `load_model`.
    `kv_cache_dtype` (EngineConfig's values): "auto" includes the error of the fp8 KV cache a checkpoint declares.
    """
    from ember.quantization.datasets import adds_bos, load_texts, token_stream

    if isinstance(model_or_path, (str, Path)):
        from ember.loader.build import load_model
        from ember.loader.resolve import resolve_model

        path = resolve_model(str(model_or_path))
        model = load_model(path, dtype, device)
        if tokenizer is None:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(path))
    else:
        model = model_or_path
    if tokenizer is None:
        raise ValueError("perplexity of a model object needs its tokenizer")
    docs = load_texts(texts, split) if isinstance(texts, (str, Path)) else list(texts)
    use_bos = adds_bos(tokenizer) if bos is None else bos
    bos_id = tokenizer.bos_token_id if use_bos else None
    need = None if num_windows is None else (num_windows + 1) * seq_len  # the windows read only this prefix
    windows = eval_windows(token_stream(tokenizer, docs, max_tokens=need), seq_len, num_windows, stride, bos_id)
    if not windows:
        raise ValueError(f"the text holds fewer than {seq_len} tokens: not one window")
    runner = PrefillRunner(model, max_seqs=batch_size, max_len=seq_len, kv_cache_dtype=kv_cache_dtype)
    total_nll, total_tokens = 0.0, 0
    for i in range(0, len(windows), batch_size):
        batch = windows[i:i + batch_size]
        for (window, first), hidden in zip(batch, runner.hidden([w for w, _ in batch])):
            logits = model.compute_logits(hidden[first - 1:-1])  # [n, V] fp32: predicts window[first:]
            target = torch.tensor(window[first:], device=logits.device)
            total_nll += float(F.cross_entropy(logits, target, reduction="sum"))
            total_tokens += target.numel()
    nll = total_nll / total_tokens
    return PerplexityResult(ppl=math.exp(nll), nll=nll, tokens=total_tokens, windows=len(windows))
