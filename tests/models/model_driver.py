"""Test helpers: tiny random transformers models per architecture, and a paged-KV driver for ember models."""

from __future__ import annotations

import torch
from transformers import AutoConfig, AutoModelForCausalLM, PreTrainedModel

from ember.attention.metadata import build_metadata
from ember.attention.torch_backend import TorchAttentionBackend
from ember.layers.attention import Attention
from ember.model_base import CausalLM
from ember.plugins import get_registry


class PagedDriver:
    """Owns per-layer KV caches [2, num_blocks, block_size, Hkv, D] and a block table per sequence id."""

    def __init__(self, model: CausalLM, block_size: int = 4, num_blocks: int = 128) -> None:
        param = next(model.parameters())
        self.model, self.block_size, self.device = model, block_size, param.device
        self.backend = TorchAttentionBackend(param.device, param.dtype)
        layers = sorted((m for m in model.modules() if isinstance(m, Attention)), key=lambda m: m.layer_idx)
        if [m.layer_idx for m in layers] != list(range(len(layers))):
            raise AssertionError(f"attention layer_idx must be 0..L-1, got {[m.layer_idx for m in layers]}")
        self.kv_caches = [torch.zeros(2, num_blocks, block_size, m.num_kv_heads, m.head_dim,
                                      dtype=param.dtype, device=param.device) for m in layers]
        self.free = list(range(num_blocks - 1, 0, -1))  # block 0 stays unused, so padding never aliases real data
        self.tables: dict[int, list[int]] = {}
        self.lens: dict[int, int] = {}

    @torch.no_grad()
    def step(self, chunks: dict[int, list[int]]) -> dict[int, torch.Tensor]:
        """Feed each sequence its next tokens in one flattened forward; returns logits [n_new, V] per sequence."""
        ids, positions, query_lens, seq_lens, tables = [], [], [], [], []
        for sid, tokens in chunks.items():
            cached = self.lens.get(sid, 0)
            total = cached + len(tokens)
            table = self.tables.setdefault(sid, [])
            while len(table) * self.block_size < total:
                table.append(self.free.pop())
            ids += tokens
            positions += range(cached, total)
            query_lens.append(len(tokens))
            seq_lens.append(total)
            tables.append(table)
            self.lens[sid] = total
        meta = build_metadata(self.backend, self.kv_caches, self.block_size, query_lens, seq_lens, tables, self.device)
        hidden = self.model(torch.tensor(ids, device=self.device), torch.tensor(positions, device=self.device), meta)
        logits = self.model.compute_logits(hidden)
        out, start = {}, 0
        for sid, n in zip(chunks, query_lens):
            out[sid] = logits[start:start + n]
            start += n
        return out

    def greedy(self, prompt: list[int], max_new_tokens: int, sid: int = 0) -> tuple[list[int], torch.Tensor]:
        """Prefill then decode one token at a time; returns (new tokens, logits of every step [n, V])."""
        logits = self.step({sid: prompt})[sid][-1:]
        steps, tokens = [logits], []
        for _ in range(max_new_tokens - 1):
            tokens.append(int(steps[-1][-1].argmax()))
            steps.append(self.step({sid: [tokens[-1]]})[sid])
        tokens.append(int(steps[-1][-1].argmax()))
        return tokens, torch.cat(steps)

def tiny_hf_model(arch: str, seed: int = 0, **overrides) -> PreTrainedModel:
    """A random fp32 transformers model of `arch` from its ember class's `tiny_config`, norms perturbed too."""
    cls = get_registry().load("model", arch)
    kwargs = {**cls.tiny_config, **overrides}
    if not kwargs.get("model_type"):
        raise AssertionError(f"{arch}: tiny_config must name a model_type")
    config = AutoConfig.for_model(**kwargs)
    config.architectures = [arch]
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config, attn_implementation="eager", dtype=torch.float32)
    if type(model).__name__ != arch:
        raise AssertionError(f"tiny_config of {arch} builds a {type(model).__name__}")
    with torch.no_grad():  # default init leaves norms at 1 (or 0 for Gemma): perturb so norm bugs show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()
