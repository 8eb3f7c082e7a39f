"""LLM: the offline entry point — load a model by name or path, then generate, chat or stream."""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections import deque
from pathlib import Path
from typing import Any, AsyncIterator, Iterator, Sequence as Seq

import torch

from ember.config import EngineConfig, KvCacheConfig
from ember.engine.llm_engine import EngineStats, LLMEngine
from ember.outputs import RequestOutput
from ember.sampling_params import SamplingParams

Prompt = str | list[int]
_DTYPES = {"float32": torch.float32, "float": torch.float32, "fp32": torch.float32, "float16": torch.float16,
           "half": torch.float16, "fp16": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


class LLM:
    """`LLM("smollm2").generate(["Hello"], SamplingParams(max_tokens=32))`.

    dtype "auto" takes the checkpoint's dtype on CUDA and float32 on CPU. kv_cache_dtype "auto" gives an fp8 (e4m3)
    KV cache when the checkpoint declares one (`ember quantize --kv-cache fp8`), else the model dtype; "fp8" asks
    for it anyway (k/v scales 1.0 where the checkpoint has none), "bfloat16" etc. refuse it (EngineConfig).
    async_scheduling (None: on for CUDA) launches each decode step before the previous one's tokens reach the host.
    """

    def __init__(self, model: str | os.PathLike, dtype: str | torch.dtype = "auto", device: str = "auto",
                 max_num_seqs: int = 256, max_num_tokens: int = 4096, max_model_len: int | None = None,
                 kv_cache: KvCacheConfig | None = None, enable_chunked_prefill: bool = True,
                 attention_backend: str = "auto", seed: int = 0, trust_remote_code: bool = False,
                 revision: str | None = None, cuda_graphs: bool = True, kv_cache_dtype: str = "auto",
                 async_scheduling: bool | None = None) -> None:
        from transformers import AutoTokenizer

        from ember.loader.build import load_model
        from ember.loader.resolve import resolve_model

        self.path = Path(resolve_model(str(model), revision=revision, trust_remote_code=trust_remote_code))
        hf_config = json.loads((self.path / "config.json").read_text())
        hf_config = {**hf_config.get("text_config", {}), **hf_config}
        self.device = _pick_device(device)
        self.dtype = _pick_dtype(dtype, hf_config, self.device)
        limit = hf_config.get("max_position_embeddings")
        if max_model_len is None and limit is None:
            raise ValueError(f"{self.path}/config.json has no max_position_embeddings; pass max_model_len=")
        self.config = EngineConfig(max_num_seqs=max_num_seqs, max_num_tokens=max_num_tokens,
                                   max_model_len=max_model_len or int(limit), kv_cache=kv_cache or KvCacheConfig(),
                                   enable_chunked_prefill=enable_chunked_prefill,
                                   attention_backend=attention_backend, seed=seed, cuda_graphs=cuda_graphs,
                                   kv_cache_dtype=kv_cache_dtype, async_scheduling=async_scheduling)
        self.model = load_model(self.path, self.dtype, self.device, trust_remote_code=trust_remote_code)
        self.tokenizer = AutoTokenizer.from_pretrained(self.path, trust_remote_code=trust_remote_code)
        self.engine = LLMEngine(self.model, self.tokenizer, self.config, self.device, self.dtype,
                                self.config.max_model_len, _eos_ids(self.path, self.tokenizer))
        self._lock = threading.Lock()                    # one engine step at a time across streams / threads
        self._inbox: dict[str, deque[RequestOutput]] = {}

    # -- batch APIs --------------------------------------------------------------------------------------------
    def generate(self, prompts: Prompt | Seq[Prompt], sampling_params: SamplingParams | Seq[SamplingParams] | None
                 = None, use_tqdm: bool = False) -> list[RequestOutput]:
        """Finished outputs in the order of `prompts` (a string, a list of strings, or lists of token ids)."""
        if isinstance(prompts, str) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], int)):
            prompts = [prompts]
        return self._run_all(list(prompts), sampling_params, use_tqdm, add_special_tokens=True)

    def chat(self, messages: list[dict[str, Any]] | list[list[dict[str, Any]]],
             sampling_params: SamplingParams | Seq[SamplingParams] | None = None, use_tqdm: bool = False,
             chat_template: str | None = None, add_generation_prompt: bool = True) -> list[RequestOutput]:
        """One conversation (a list of {"role", "content"} dicts) or a list of them, through the chat template."""
        convs = [messages] if messages and isinstance(messages[0], dict) else list(messages)
        if chat_template is None and not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"the tokenizer in {self.path} has no chat template; pass chat_template= "
                             "or use generate() with plain prompts")
        texts = [self.tokenizer.apply_chat_template(c, tokenize=False, chat_template=chat_template,
                                                    add_generation_prompt=add_generation_prompt) for c in convs]
        # The template already spells out BOS and friends; do not add them twice.
        return self._run_all(texts, sampling_params, use_tqdm, add_special_tokens=False)

    def _run_all(self, prompts: list[Prompt], params: SamplingParams | Seq[SamplingParams] | None, use_tqdm: bool,
                 add_special_tokens: bool) -> list[RequestOutput]:
        if isinstance(params, (list, tuple)):
            if len(params) != len(prompts):
                raise ValueError(f"got {len(params)} sampling_params for {len(prompts)} prompts; pass one or "
                                 "one per prompt")
            plist = list(params)
        else:
            plist = [params or SamplingParams()] * len(prompts)
        for i, p in enumerate(prompts):
            if len(p) == 0:
                raise ValueError(f"prompt {i} is empty; pass at least one token")
        rids = self._add(prompts, plist, add_special_tokens, stream=False)
        bar = _progress(len(rids), use_tqdm)
        final: dict[str, RequestOutput] = {}
        try:
            while len(final) < len(rids):
                self._wait_for_any(rids)
                for rid in rids:
                    for out in _drain(self._inbox[rid]):
                        if out.finished:
                            final[rid] = out
                            bar.update(1) if bar else None
        finally:
            self._release(rids)
            bar.close() if bar else None
        return [final[rid] for rid in rids]

    # -- streaming ---------------------------------------------------------------------------------------------
    def generate_stream(self, prompt: Prompt, sampling_params: SamplingParams | None = None
                        ) -> Iterator[RequestOutput]:
        """Outputs as tokens arrive: `delta_text` / `delta_token_ids` are new, `text` / `token_ids` cumulative."""
        [rid] = self._add([prompt], [sampling_params or SamplingParams()], True)
        try:
            while True:
                self._wait_for_any([rid])
                for out in _drain(self._inbox[rid]):
                    yield out
                    if out.finished:
                        return
        finally:
            self._release([rid])

    async def generate_async(self, prompt: Prompt, sampling_params: SamplingParams | None = None
                             ) -> AsyncIterator[RequestOutput]:
        """Async streaming; concurrent calls share engine steps (each step runs in a worker thread)."""
        [rid] = self._add([prompt], [sampling_params or SamplingParams()], True)
        try:
            while True:
                if not self._inbox[rid]:
                    await asyncio.to_thread(self._wait_for_any, [rid])
                for out in _drain(self._inbox[rid]):
                    yield out
                    if out.finished:
                        return
        finally:
            self._release([rid])

    def stats(self) -> EngineStats:
        """Prefix-cache hit rate, preemptions and KV blocks used / free."""
        return self.engine.stats()

    # -- plumbing ----------------------------------------------------------------------------------------------
    def _add(self, prompts: list[Prompt], params: list[SamplingParams], add_special_tokens: bool,
             stream: bool = True) -> list[str]:
        """stream=False: the engine reports each request once, finished (offline generate needs nothing else)."""
        rids: list[str] = []
        with self._lock:
            try:
                for prompt, p in zip(prompts, params):
                    rid = self.engine.add_request(prompt, p, add_special_tokens=add_special_tokens, stream=stream)
                    self._inbox[rid] = deque()
                    rids.append(rid)
            except Exception:
                for rid in rids:
                    self.engine.abort_request(rid)
                    del self._inbox[rid]
                raise
        return rids

    def _wait_for_any(self, rids: list[str]) -> None:
        """Step the engine until one of `rids` has an output waiting; other requests' outputs go to their inbox."""
        while not any(self._inbox[r] for r in rids):
            with self._lock:
                if any(self._inbox[r] for r in rids):
                    return
                if not self.engine.has_unfinished():
                    raise RuntimeError(f"engine is idle but requests {rids} never finished (engine bug)")
                outputs = self.engine.step()
            for out in outputs:
                box = self._inbox.get(out.request_id)
                if box is not None:
                    box.append(out)

    def _release(self, rids: list[str]) -> None:
        """Forget the inboxes; abort what did not finish (a caller that stopped iterating early)."""
        with self._lock:
            for rid in rids:
                self._inbox.pop(rid, None)
                self.engine.abort_request(rid)


def _drain(box: deque[RequestOutput]) -> Iterator[RequestOutput]:
    while box:
        yield box.popleft()


def _progress(total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm
    return tqdm(total=total, desc="generate", unit="req")


def _pick_device(device: str | torch.device) -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA GPU is visible; use device='cpu' or 'auto'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}")
    return dev


def _pick_dtype(dtype: str | torch.dtype, hf_config: dict[str, Any], device: torch.device) -> torch.dtype:
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        if device.type != "cuda":
            return torch.float32   # half precision on CPU is slow and poorly supported
        return _DTYPES.get(str(hf_config.get("torch_dtype") or hf_config.get("dtype") or "bfloat16"), torch.bfloat16)
    if dtype not in _DTYPES:
        raise ValueError(f"dtype must be 'auto', a torch.dtype or one of {sorted(_DTYPES)}, got {dtype!r}")
    return _DTYPES[dtype]


def _eos_ids(path: Path, tokenizer: Any) -> list[int]:
    """EOS ids from generation_config.json (may be a list), else the tokenizer's."""
    gen = path / "generation_config.json"
    eos = json.loads(gen.read_text()).get("eos_token_id") if gen.exists() else None
    if eos is None:
        eos = tokenizer.eos_token_id
    if eos is None:
        return []
    return [eos] if isinstance(eos, int) else list(eos)
