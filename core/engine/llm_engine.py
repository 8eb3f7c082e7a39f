"""LLMEngine: requests in, RequestOutputs out; each step is schedule -> run -> postprocess.

Async scheduling (on by default on CUDA): a step is launched before the previous step's sampled ids reach the
host. Each sequence sampled by the step in flight carries a PLACEHOLDER last token while the next step is
scheduled and launched (its input is read on the device); then the host waits for the older step, swaps the
real ids in and applies stop conditions, while the GPU runs the newer one. A sequence that finished is one
wasted row in the step after (its result is dropped). Steps that sample a request whose sampling reads the token
history (penalties, bad words, min_tokens, logprobs) run synchronously as before.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from ember.config import EngineConfig
from ember.engine.block_manager import BlockManager
from ember.engine.detokenizer import IncrementalDetokenizer
from ember.engine.model_runner import ModelRunner, PendingStep, StepResult
from ember.engine.output_processor import append_token, make_output
from ember.engine.scheduler import ScheduledBatch, Scheduler
from ember.engine.sequence import PLACEHOLDER, Request, Sequence, SequenceStatus
from ember.outputs import RequestOutput
from ember.sampling_params import SamplingParams


@dataclass(frozen=True)
class EngineStats:
    prefix_cache_hit_rate: float      # tokens found in the prefix cache / tokens looked up at admission
    prefix_cache_hit_tokens: int
    prefix_cache_query_tokens: int
    num_preemptions: int
    num_blocks: int
    num_blocks_used: int
    num_blocks_free: int
    num_running: int
    num_waiting: int


class LLMEngine:
    def __init__(self, model: nn.Module, tokenizer: Any, config: EngineConfig, device: torch.device,
                 dtype: torch.dtype, max_model_len: int, eos_token_ids: list[int]) -> None:
        self.tokenizer = tokenizer
        self.config = config
        self.device = device
        self.max_model_len = max_model_len
        self.eos_token_ids = eos_token_ids
        self.vocab_size: int = model.config.vocab_size      # CausalLM keeps its Hugging Face config
        self.runner = ModelRunner(model, config, device, dtype, max_model_len)
        self.block_manager = BlockManager(self.runner.num_blocks, config.kv_cache.block_size,
                                          config.kv_cache.enable_prefix_caching)
        self.scheduler = Scheduler(self.block_manager, config.max_num_seqs, config.max_num_tokens,
                                   config.enable_chunked_prefill)
        self.requests: dict[str, Request] = {}
        self._rejected: list[Request] = []     # failed at admission; reported by the next step
        self._ids = itertools.count()
        self._seq_ids = itertools.count()
        self.async_scheduling = (device.type == "cuda" if config.async_scheduling is None
                                 else config.async_scheduling)
        self._inflight: tuple[ScheduledBatch, PendingStep] | None = None

    @property
    def eos_token_ids(self) -> list[int]:
        return list(self._eos_ids)

    @eos_token_ids.setter
    def eos_token_ids(self, ids: list[int]) -> None:
        self._eos_ids = list(ids)
        self._eos_set = frozenset(self._eos_ids)    # per-token membership test in postprocessing

    # -- requests ----------------------------------------------------------------------------------------------
    def add_request(self, prompt: str | list[int], params: SamplingParams | None = None,
                    request_id: str | None = None, add_special_tokens: bool = True, stream: bool = True) -> str:
        """Queue a prompt (text or token ids). Bad prompts that only this request suffers from (too long for
        the model or the KV cache) come back as a finished output with finish_reason "error".

        stream=False: `step()` reports the request only once it has finished (no per-step output objects;
        what offline `generate` and the throughput bench need)."""
        params = params or SamplingParams()
        text = prompt if isinstance(prompt, str) else None
        ids = (self.tokenizer.encode(prompt, add_special_tokens=add_special_tokens) if isinstance(prompt, str)
               else list(prompt))
        if not ids:
            raise ValueError("prompt is empty: pass at least one token (an empty string tokenizes to nothing "
                             "when the tokenizer adds no BOS)")
        if not all(isinstance(t, int) and 0 <= t < self.vocab_size for t in ids):
            raise ValueError(f"prompt token ids must be ints in [0, {self.vocab_size}) (the model's vocab_size)")
        request_id = request_id if request_id is not None else str(next(self._ids))
        if request_id in self.requests:
            raise ValueError(f"request id {request_id!r} is already in flight; use a unique id")
        req = Request(request_id, text, ids, params, bad_words_ids=self._bad_words(params), stream=stream)
        # n > 1: samples after the first wait until its prompt blocks are computed and registered, then take
        # them from the prefix cache (shared blocks, ref-counted); without prefix caching each computes its own.
        leader = None
        for i in range(params.n):
            gen = torch.Generator(self.device).manual_seed(params.seed + i) if params.seed is not None else None
            detok = (IncrementalDetokenizer(self.tokenizer, ids, params.skip_special_tokens) if params.detokenize
                     else None)
            seq = Sequence(next(self._seq_ids), req, i, ids, gen, detok, leader=leader)
            if self.block_manager.enable_prefix_caching:
                leader = leader or seq
            req.seqs.append(seq)
        req.error = self._check_fits(len(ids))
        if req.error is not None:
            for seq in req.seqs:
                seq.finish("error")
            self._rejected.append(req)
            return request_id
        self.requests[request_id] = req
        for seq in req.seqs:
            self.scheduler.add(seq)
        return request_id

    def _check_fits(self, num_tokens: int) -> str | None:
        if num_tokens > self.max_model_len:
            return (f"prompt has {num_tokens} tokens but max_model_len is {self.max_model_len}; "
                    "shorten the prompt or raise max_model_len")
        if not self.config.enable_chunked_prefill and num_tokens > self.config.max_num_tokens:
            return (f"prompt has {num_tokens} tokens but max_num_tokens is {self.config.max_num_tokens} and "
                    "chunked prefill is off; enable_chunked_prefill=True or raise max_num_tokens")
        blocks = self.block_manager.blocks_needed(num_tokens)
        if blocks > self.block_manager.num_blocks:
            return (f"prompt has {num_tokens} tokens and needs {blocks} KV blocks but the cache has only "
                    f"{self.block_manager.num_blocks}; raise kv_cache num_blocks / gpu_memory_utilization")
        return None

    def _bad_words(self, params: SamplingParams) -> list[list[int]]:
        words = [list(w) for w in params.bad_words_token_ids]
        for word in params.bad_words:
            for variant in (word, " " + word):
                ids = self.tokenizer.encode(variant, add_special_tokens=False)
                if ids and ids not in words:
                    words.append(ids)
        return words

    def abort_request(self, request_id: str) -> None:
        """Stop a request now and release its blocks; unknown or finished ids are ignored."""
        req = self.requests.pop(request_id, None)
        if req is None:
            return
        for seq in req.seqs:
            if not seq.is_finished:
                self.scheduler.free(seq)
                seq.finish("abort")

    def has_unfinished(self) -> bool:
        return bool(self._rejected) or self.scheduler.has_unfinished()

    # -- the loop ----------------------------------------------------------------------------------------------
    def step(self) -> list[RequestOutput]:
        if not self.async_scheduling:
            batch = self.scheduler.schedule()
            results = self.runner.execute(batch, self._eos_ids) if batch.seqs else []
            return self._postprocess(batch, results)
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            self._assume_sampled(*inflight)
        batch = self.scheduler.schedule()
        if self._can_launch(batch):
            self._inflight = (batch, self.runner.launch(batch, self._eos_ids))
            return self._resolve(inflight[1]) if inflight is not None else self._emit([], [])
        outputs = self._resolve(inflight[1]) if inflight is not None else []
        batch = _without_finished(batch)
        results = self.runner.execute(batch, self._eos_ids) if batch.seqs else []
        return outputs + self._postprocess(batch, results)

    def _can_launch(self, batch: ScheduledBatch) -> bool:
        """A step can run ahead of the host when no sequence it samples needs the token history to sample."""
        return bool(batch.seqs) and not batch.failed and all(
            s.request.history_free for s, n in zip(batch.seqs, batch.num_new_tokens)
            if s.num_computed_tokens + n == len(s.token_ids))

    def _assume_sampled(self, batch: ScheduledBatch, pending: PendingStep) -> None:
        """The step in flight computed its tokens and sampled one more for each sequence in `pending`: advance
        those by a PLACEHOLDER so the scheduler plans the next step (and its KV slots) before the ids are known."""
        for seq in pending.seqs:
            if not seq.is_finished:
                seq.token_ids.append(PLACEHOLDER)
        self.scheduler.mark_computed(_without_finished(batch))

    def _resolve(self, pending: PendingStep) -> list[RequestOutput]:
        """Wait for an older step's ids, put them in place of the placeholders and apply stop conditions."""
        results = []
        for seq, token in zip(pending.seqs, pending.tokens()):
            if seq.token_ids and seq.token_ids[-1] == PLACEHOLDER:
                seq.token_ids.pop()
                if not seq.is_finished:
                    results.append((seq, token, None))
        return self._emit([], results)

    def _postprocess(self, batch: ScheduledBatch, results: list[StepResult]) -> list[RequestOutput]:
        self.scheduler.mark_computed(batch)
        return self._emit(batch.failed, results)

    def _emit(self, failed: list[Sequence], results: list[StepResult]) -> list[RequestOutput]:
        """Append sampled tokens, finish and free what stopped, and build the outputs to report."""
        touched: dict[str, Request] = {r.request_id: r for r in self._rejected}
        self._rejected = []
        for seq in failed:
            seq.request.error = (f"sequence of {seq.num_tokens} tokens no longer fits in the KV cache "
                                 f"({self.block_manager.num_blocks} blocks of {self.block_manager.block_size}); "
                                 "raise kv_cache num_blocks or lower max_tokens")
            seq.finish("error")
            touched[seq.request.request_id] = seq.request
        finished: list[Sequence] = []
        eos, max_len = self._eos_set, self.max_model_len
        for seq, token, logprobs in results:
            append_token(seq, token, logprobs, eos, max_len)
            req = seq.request
            if seq.status is SequenceStatus.FINISHED:
                finished.append(seq)
                touched[req.request_id] = req
            elif req.stream:
                touched[req.request_id] = req
        if finished:
            self.scheduler.free_finished(finished)
        outputs = []
        for req in touched.values():
            if req.stream or req.finished:
                out = make_output(req)
                outputs.append(out)
                if out.finished:
                    self.requests.pop(out.request_id, None)
        return outputs

    def stats(self) -> EngineStats:
        s, bm = self.scheduler, self.block_manager
        return EngineStats(
            prefix_cache_hit_rate=s.prefix_hit_tokens / s.prefix_query_tokens if s.prefix_query_tokens else 0.0,
            prefix_cache_hit_tokens=s.prefix_hit_tokens, prefix_cache_query_tokens=s.prefix_query_tokens,
            num_preemptions=s.num_preemptions, num_blocks=bm.num_blocks, num_blocks_used=bm.num_used_blocks,
            num_blocks_free=bm.num_free_blocks, num_running=len(s.running), num_waiting=len(s.waiting))


def _without_finished(batch: ScheduledBatch) -> ScheduledBatch:
    """The batch minus sequences that finished (or were aborted) after it was scheduled."""
    if not any(s.is_finished for s in batch.seqs):
        return batch
    keep = [(s, n) for s, n in zip(batch.seqs, batch.num_new_tokens) if not s.is_finished]
    return ScheduledBatch([s for s, _ in keep], [n for _, n in keep], batch.failed)
