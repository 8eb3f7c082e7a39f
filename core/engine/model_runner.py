"""ModelRunner: owns the KV cache, turns a scheduled batch into one flattened forward pass and samples."""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass

import torch
from torch import nn

from ember.attention.kv_quant import is_fp8, resolve_kv_cache_dtype
from ember.attention.metadata import build_metadata
from ember.config import EngineConfig
from ember.engine.cuda_graph import DecodeGraphs
from ember.engine.sampler import Sampler, SamplingBatch
from ember.engine.scheduler import ScheduledBatch
from ember.engine.sequence import PLACEHOLDER, Sequence
from ember.layers.attention import Attention
from ember.plugins import get_registry

logger = logging.getLogger("ember.engine")

StepResult = tuple[Sequence, int, dict[int, float] | None]   # (sequence, sampled token id, logprobs)


@dataclass
class PendingStep:
    """A launched decode step whose sampled ids are on their way to pinned host memory (async scheduling)."""

    seqs: list[Sequence]
    sampled_host: torch.Tensor           # [>= N] int64, pinned on CUDA; rows [:N] valid once `done` fired
    done: torch.cuda.Event | None        # None on CPU (the copy was synchronous)

    def tokens(self) -> list[int]:
        """The sampled ids, waiting for this step only (not for a step launched after it)."""
        if self.done is not None:
            self.done.synchronize()
        return self.sampled_host[:len(self.seqs)].tolist()


def pick_backend(name: str, device: torch.device) -> str:
    """"auto" -> "triton" on CUDA when triton imports (the fast path, CUDA-graph safe), else "torch"."""
    if name != "auto":
        return name
    if device.type == "cuda" and importlib.util.find_spec("triton") is not None:
        return "triton"
    return "torch"


class ModelRunner:
    def __init__(self, model: nn.Module, config: EngineConfig, device: torch.device, dtype: torch.dtype,
                 max_model_len: int) -> None:
        self.model = model
        self.config = config
        self.device = device
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.block_size = config.kv_cache.block_size
        self.backend = get_registry().load("attention_backend", pick_backend(config.attention_backend, device))(
            device, dtype)
        layers = sorted((m for m in model.modules() if isinstance(m, Attention)), key=lambda m: m.layer_idx)
        if not layers:
            raise ValueError(f"{type(model).__name__} has no ember.layers.attention.Attention modules; "
                             "model plugins must build their attention from that layer")
        self.layers = layers
        self.kv_dtype = resolve_kv_cache_dtype(config.kv_cache_dtype, dtype, getattr(model, "quant_config", None))
        if is_fp8(self.kv_dtype):
            self._place_kv_scales()
        self.num_blocks = config.kv_cache.num_blocks or self._auto_num_blocks()
        self.kv_caches = self._allocate(self.num_blocks)
        self.sampler = Sampler(device, config.seed)
        # Async scheduling: each launched step's sampled ids stay here for the next step's inputs (device side),
        # and go to one of two pinned host buffers (the host reads step n while step n+1 runs).
        self.last_sampled = torch.zeros(config.max_num_seqs, dtype=torch.long, device=device)   # [max_num_seqs]
        pin = device.type == "cuda"
        self._sampled_host = [torch.zeros(config.max_num_seqs, dtype=torch.long, pin_memory=pin) for _ in range(2)]
        self._sampled_flip = 0
        # Modules that would sync with the host on this device / dtype (e.g. the reference MoE loop) rule graphs out.
        self.graph_blockers = [name for name, m in model.named_modules()
                               if hasattr(m, "graph_safe") and not m.graph_safe(device, dtype)]
        if self.graph_blockers and config.cuda_graphs and device.type == "cuda":
            logger.warning("CUDA graphs off: %s cannot be captured with %s (e.g. %s); decode runs eagerly",
                           type(model).__name__, str(dtype).removeprefix("torch."), self.graph_blockers[0])
        self.graphs: DecodeGraphs | None = None
        if self.use_cuda_graphs:
            self.graphs = DecodeGraphs(model, self.backend, self.kv_caches, self.block_size,
                                       min(config.cuda_graph_max_batch, config.max_num_seqs), max_model_len,
                                       model.config.vocab_size, device, self.last_sampled)
            self.graphs.capture()

    @property
    def use_cuda_graphs(self) -> bool:
        """Why: at batch 1 an eager 8B decode step is launch-bound (~400 kernels); replaying a graph is not."""
        return (self.config.cuda_graphs and self.device.type == "cuda" and self.backend.supports_cuda_graphs
                and not self.graph_blockers)

    def _place_kv_scales(self) -> None:
        """fp8 cache: every layer's k_scale / v_scale onto the device (the kernels read them there)."""
        calibrated = sum(layer.kv_scales_calibrated for layer in self.layers)
        if calibrated < len(self.layers):
            logger.warning("FP8 KV cache: %d of %d attention layers have no k_scale / v_scale in the checkpoint and "
                           "use uncalibrated scales 1.0 (as vLLM does; |k|, |v| beyond 448 saturate). Quantize with "
                           "`ember quantize --kv-cache fp8` for calibrated scales", len(self.layers) - calibrated,
                           len(self.layers))
        else:
            logger.info("FP8 KV cache with the checkpoint's calibrated k/v scales")
        for layer in self.layers:
            layer.kv_scales_to_(self.device)

    def _allocate(self, num_blocks: int) -> list[torch.Tensor]:
        """One [2, num_blocks, block_size, Hkv, D] cache of `kv_dtype` per attention layer, indexed by layer_idx."""
        caches: list[torch.Tensor] = [torch.empty(0)] * (self.layers[-1].layer_idx + 1)
        for layer in self.layers:
            caches[layer.layer_idx] = torch.zeros(2, num_blocks, self.block_size, layer.num_kv_heads,
                                                  layer.head_dim, dtype=self.kv_dtype, device=self.device)
        return caches

    def _bytes_per_block(self) -> int:
        """Bytes of one block across all layers: an fp8 cache counts 1 byte per element, so it holds 2x the tokens."""
        elem = torch.empty(0, dtype=self.kv_dtype).element_size()
        return sum(2 * self.block_size * layer.num_kv_heads * layer.head_dim * elem for layer in self.layers)

    def _auto_num_blocks(self) -> int:
        """CPU: enough for max_num_seqs full-length sequences, capped at cpu_kv_cache_gb.
        CUDA: gpu_memory_utilization of the GPU minus weights, other processes and a profiled worst-case step."""
        kv = self.config.kv_cache
        per_block = self._bytes_per_block()
        if self.device.type != "cuda":
            wanted = self.config.max_num_seqs * -(-self.max_model_len // self.block_size)
            return max(1, min(wanted, int(kv.cpu_kv_cache_gb * 2**30 // per_block)))
        activation = self._profile_step()
        free, total = torch.cuda.mem_get_info(self.device)
        budget = total * kv.gpu_memory_utilization - (total - free) - activation
        num_blocks = int(budget // per_block)
        if num_blocks < 1:
            raise ValueError(f"no GPU memory left for the KV cache ({budget / 2**30:.2f} GiB after weights and "
                             f"activations); raise gpu_memory_utilization, lower max_num_tokens or use a smaller dtype")
        logger.info("KV cache: %d blocks of %d tokens (%.2f GiB, %s)", num_blocks, self.block_size,
                    num_blocks * per_block / 2**30, str(self.kv_dtype).removeprefix("torch."))
        return num_blocks

    @torch.inference_mode()
    def _profile_step(self) -> int:
        """Peak activation bytes of a full max_num_tokens prefill step, run on a throwaway cache just big enough."""
        lens, left = [], self.config.max_num_tokens
        while left > 0:
            lens.append(min(left, self.max_model_len))
            left -= lens[-1]
        blocks = [-(-n // self.block_size) for n in lens]
        caches = self._allocate(sum(blocks))
        tables, start = [], 0
        for b in blocks:
            tables.append(list(range(start, start + b)))
            start += b
        torch.cuda.synchronize(self.device)
        torch.cuda.reset_peak_memory_stats(self.device)
        before = torch.cuda.memory_allocated(self.device)
        meta = build_metadata(self.backend, caches, self.block_size, lens, lens, tables, self.device)
        ids = torch.zeros(sum(lens), dtype=torch.long, device=self.device)
        positions = torch.cat([torch.arange(n, device=self.device) for n in lens])
        hidden = self.model(ids, positions, meta)
        self.model.compute_logits(hidden[-self.config.max_num_seqs:])
        torch.cuda.synchronize(self.device)
        peak = torch.cuda.max_memory_allocated(self.device) - before
        del caches, meta, hidden
        torch.cuda.empty_cache()
        return peak

    @torch.inference_mode()
    def execute(self, batch: ScheduledBatch, eos_ids: list[int]) -> list[StepResult]:
        """Forward all scheduled tokens; sample for the sequences whose chunk reaches their last token."""
        logits, sample_seqs = self._forward(batch, pending_inputs=False)
        return self._sample(logits, sample_seqs, eos_ids) if sample_seqs else []

    def _forward(self, batch: ScheduledBatch, pending_inputs: bool) -> tuple[torch.Tensor, list[Sequence]]:
        """(logits [N, V], the N sequences sampled this step): a decode-only step (one token per sequence, each
        sampled) replays its bucket's graph when one fits, anything else runs eagerly. pending_inputs: some last
        tokens may be PLACEHOLDERs, to be read from `last_sampled` (async scheduling)."""
        seqs, counts = batch.seqs, batch.num_new_tokens
        if (self.graphs is not None and len(seqs) == sum(counts)
                and all(s.num_computed_tokens + 1 == len(s.token_ids) for s in seqs)
                and self.graphs.bucket_for(len(seqs)) is not None):
            sources = ([s.pending_row if s.token_ids[-1] == PLACEHOLDER else -1 for s in seqs] if pending_inputs
                       else None)
            return self.graphs.run(seqs, sources), seqs
        return self._eager_logits(seqs, counts)

    @torch.inference_mode()
    def launch(self, batch: ScheduledBatch, eos_ids: list[int]) -> PendingStep:
        """Start a step whose sampling reads no token history without waiting for its ids. A sequence whose last
        token is the PLACEHOLDER takes that input from the step launched before this one
        (`last_sampled[seq.pending_row]`, still on the device). Decode-only steps replay a graph when one fits."""
        logits, sample_seqs = self._forward(batch, pending_inputs=True)
        n = len(sample_seqs)
        host = self._sampled_host[self._sampled_flip]
        self._sampled_flip ^= 1
        done = None
        if n:
            sampled, _ = self.sampler(logits, SamplingBatch.build(sample_seqs, eos_ids, logits.shape[-1],
                                                                  self.device))
            self.last_sampled[:n].copy_(sampled)
            host[:n].copy_(sampled, non_blocking=True)
            if self.device.type == "cuda":
                done = torch.cuda.Event()
                done.record()
        for i, seq in enumerate(sample_seqs):
            seq.pending_row = i
        return PendingStep(list(sample_seqs), host, done)

    def _eager_logits(self, seqs: list[Sequence], counts: list[int]) -> tuple[torch.Tensor, list[Sequence]]:
        """One flattened forward of every scheduled token -> (logits [N, V] of the sequences whose chunk reaches
        their last token, those N sequences). A PLACEHOLDER input is read from `last_sampled` on the device."""
        input_ids: list[int] = []
        positions: list[int] = []
        seq_lens: list[int] = []
        sample_rows: list[int] = []
        sample_seqs: list[Sequence] = []
        pending_rows: list[int] = []      # token rows whose id is still on the device, and where it is there
        pending_src: list[int] = []
        for seq, n in zip(seqs, counts):
            start = seq.num_computed_tokens
            input_ids += seq.token_ids[start:start + n]
            positions += range(start, start + n)
            seq_lens.append(start + n)
            if input_ids[-1] == PLACEHOLDER:
                pending_rows.append(len(input_ids) - 1)
                pending_src.append(seq.pending_row)
            if start + n == seq.num_tokens:
                sample_rows.append(len(input_ids) - 1)
                sample_seqs.append(seq)
        meta = build_metadata(self.backend, self.kv_caches, self.block_size, counts, seq_lens,
                              [s.block_table for s in seqs], self.device)
        ids_t = torch.tensor(input_ids, dtype=torch.long).to(self.device, non_blocking=True)       # [T]
        if pending_rows:
            rows = torch.tensor(pending_rows, dtype=torch.long).to(self.device, non_blocking=True)
            src = torch.tensor(pending_src, dtype=torch.long).to(self.device, non_blocking=True)
            ids_t[rows] = self.last_sampled[src]
        pos_t = torch.tensor(positions, dtype=torch.long).to(self.device, non_blocking=True)       # [T]
        hidden = self.model(ids_t, pos_t, meta)                                                      # [T, H]
        if not sample_seqs:
            return hidden[:0], []
        rows = torch.tensor(sample_rows, dtype=torch.long).to(self.device, non_blocking=True)
        return self.model.compute_logits(hidden[rows]), sample_seqs                                 # [N, V]

    def _sample(self, logits: torch.Tensor, sample_seqs: list[Sequence], eos_ids: list[int]) -> list[StepResult]:
        sampling = SamplingBatch.build(sample_seqs, eos_ids, logits.shape[-1], self.device)
        sampled, logprobs = self.sampler(logits, sampling)
        if logprobs is None:
            return [(s, t, None) for s, t in zip(sample_seqs, sampled.tolist())]   # the one host transfer
        packed = torch.cat([sampled[:, None].double(), logprobs], dim=1).tolist()   # one transfer, ids included
        return [(s, int(row[0]), _logprob_dict(row, s.params.logprobs)) for s, row in zip(sample_seqs, packed)]


def _logprob_dict(row: list[float], k: int | None) -> dict[int, float] | None:
    """Packed row [id, lp_sampled, K top lps, K top ids] -> {top-k ids and the sampled id: logprob}."""
    if k is None:
        return None
    width = (len(row) - 2) // 2
    out = {int(row[2 + width + j]): row[2 + j] for j in range(k)}
    out[int(row[0])] = row[1]
    return out
