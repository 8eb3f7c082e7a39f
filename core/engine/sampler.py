"""Batched sampling on the device: penalties, bans, temperature, top-k/top-p/min-p, seeded exponential race."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ember.engine.sequence import Sequence


@dataclass
class SamplingBatch:
    """Per-row sampling parameters of the N sequences that get a token this step, already on the device."""

    temperature: torch.Tensor | None   # [N] float32, 1.0 on greedy rows (None when all_greedy)
    greedy: torch.Tensor | None        # [N] bool (None when all_greedy)
    top_k: torch.Tensor | None         # [N] int64, V where disabled
    top_p: torch.Tensor | None         # [N] float32
    min_p: torch.Tensor | None         # [N] float32
    penalties: torch.Tensor | None     # [N, 3] repetition, presence, frequency
    prompt_ids: torch.Tensor | None    # [N, P] int64 padded with V
    output_ids: torch.Tensor | None    # [N, O] int64 padded with V
    banned: tuple[torch.Tensor, torch.Tensor] | None   # (rows, token ids) forced to -inf
    generators: list[torch.Generator | None]
    all_greedy: bool
    max_logprobs: int | None           # largest top-N asked for; None = nobody wants logprobs

    @classmethod
    def build(cls, seqs: list[Sequence], eos_ids: list[int], vocab_size: int,
              device: torch.device) -> "SamplingBatch":
        if all(s.request.plain_greedy for s in seqs):
            # The common bench / greedy case: one argmax, no per-step host lists or copies.
            return cls(temperature=None, greedy=None, top_k=None, top_p=None, min_p=None, penalties=None,
                       prompt_ids=None, output_ids=None, banned=None, generators=[], all_greedy=True,
                       max_logprobs=None)
        ps = [s.params for s in seqs]

        def dev(data: list, dtype: torch.dtype) -> torch.Tensor:
            return torch.tensor(data, dtype=dtype).to(device, non_blocking=True)

        def padded(rows: list[list[int]]) -> torch.Tensor:
            width = max((len(r) for r in rows), default=0)
            return dev([r + [vocab_size] * (width - len(r)) for r in rows], torch.int64).view(len(rows), width)

        use_pen = any(p.repetition_penalty != 1.0 or p.presence_penalty or p.frequency_penalty for p in ps)
        rows, cols = [], []
        for i, s in enumerate(seqs):
            for token in _banned_tokens(s, eos_ids):
                if token < vocab_size:
                    rows.append(i)
                    cols.append(token)
        asked = [p.logprobs for p in ps if p.logprobs is not None]
        return cls(
            temperature=dev([p.temperature if not p.greedy else 1.0 for p in ps], torch.float32),
            greedy=dev([p.greedy for p in ps], torch.bool),
            top_k=dev([p.top_k or vocab_size for p in ps], torch.int64) if any(p.top_k for p in ps) else None,
            top_p=dev([p.top_p for p in ps], torch.float32) if any(p.top_p < 1.0 for p in ps) else None,
            min_p=dev([p.min_p for p in ps], torch.float32) if any(p.min_p > 0.0 for p in ps) else None,
            penalties=dev([[p.repetition_penalty, p.presence_penalty, p.frequency_penalty] for p in ps],
                          torch.float32) if use_pen else None,
            prompt_ids=padded([s.token_ids[:s.num_prompt_tokens] for s in seqs]) if use_pen else None,
            output_ids=padded([s.output_token_ids for s in seqs]) if use_pen else None,
            banned=(dev(rows, torch.int64), dev(cols, torch.int64)) if rows else None,
            generators=[s.generator for s in seqs],
            all_greedy=all(p.greedy for p in ps),
            max_logprobs=max(asked) if asked else None,
        )


def _banned_tokens(seq: Sequence, eos_ids: list[int]) -> list[int]:
    """Tokens that would complete a bad word, plus eos / stop tokens while min_tokens is not reached."""
    out = []
    for word in seq.request.bad_words_ids:
        if len(word) == 1 or seq.token_ids[len(seq.token_ids) - len(word) + 1:] == word[:-1]:
            out.append(word[-1])
    p = seq.params
    if seq.num_output_tokens < p.min_tokens:
        out += list(p.stop_token_ids) + ([] if p.ignore_eos else list(eos_ids))
    return out


class Sampler:
    """logits [N, V] -> sampled ids [N] (+ logprobs); no host synchronisation anywhere."""

    def __init__(self, device: torch.device, seed: int) -> None:
        # Rows without a per-request seed draw from this engine-wide generator.
        self.generator = torch.Generator(device=device).manual_seed(seed)

    @torch.inference_mode()
    def __call__(self, logits: torch.Tensor, batch: SamplingBatch) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Returns (sampled [N] int64, logprobs [N, 1 + 2K] float64 or None).

        Logprob rows are [sampled token's logprob, K top logprobs, K top ids] so one transfer carries them all.
        """
        logits = logits.float()
        raw = logits
        if batch.penalties is not None:
            logits = apply_penalties(logits, batch.penalties, batch.prompt_ids, batch.output_ids)
        if batch.banned is not None:
            logits = logits.index_put(batch.banned, torch.tensor(float("-inf"), device=logits.device))
        greedy_ids = logits.argmax(dim=-1)
        if batch.all_greedy:
            sampled = greedy_ids
        else:
            logits = logits / batch.temperature[:, None]
            logits = apply_top_k_top_p(logits, batch.top_k, batch.top_p)
            if batch.min_p is not None:
                probs = logits.softmax(dim=-1)
                too_small = probs < batch.min_p[:, None] * probs.max(dim=-1, keepdim=True).values
                logits = logits.masked_fill(too_small, float("-inf"))
            sampled = torch.where(batch.greedy, greedy_ids, self._race(logits.softmax(dim=-1), batch.generators))
        return sampled, self._logprobs(raw, sampled, batch.max_logprobs)

    def _race(self, probs: torch.Tensor, generators: list[torch.Generator | None]) -> torch.Tensor:
        """Exponential race (argmax p / q, q ~ Exp(1)) = a sample from p; seeded rows use their own generator, so
        their draws do not depend on which other requests share the batch."""
        q = torch.empty_like(probs)
        shared = [i for i, g in enumerate(generators) if g is None]
        if shared:
            q[shared] = torch.empty(len(shared), probs.shape[1], device=probs.device).exponential_(
                generator=self.generator)
        for i, g in enumerate(generators):
            if g is not None:
                q[i].exponential_(generator=g)
        return (probs / q).argmax(dim=-1)

    @staticmethod
    def _logprobs(raw: torch.Tensor, sampled: torch.Tensor, k: int | None) -> torch.Tensor | None:
        """Log-probabilities of the raw model distribution (before penalties and temperature), as in vLLM v1."""
        if k is None:
            return None
        lp = raw.log_softmax(dim=-1)
        top = lp.topk(k, dim=-1) if k > 0 else None
        parts = [lp.gather(1, sampled[:, None]).double()]
        if top is not None:
            parts += [top.values.double(), top.indices.double()]
        return torch.cat(parts, dim=1)


def apply_penalties(logits: torch.Tensor, penalties: torch.Tensor, prompt_ids: torch.Tensor,
                    output_ids: torch.Tensor) -> torch.Tensor:
    """Repetition over prompt + output tokens; presence and frequency over output tokens (OpenAI / vLLM rules)."""
    n, v = logits.shape
    counts = torch.zeros(n, v + 1, device=logits.device).scatter_add_(
        1, output_ids, torch.ones_like(output_ids, dtype=torch.float32))[:, :v]          # [N, V]
    in_prompt = torch.zeros(n, v + 1, dtype=torch.bool, device=logits.device).scatter_(
        1, prompt_ids, True)[:, :v]
    rep, pres, freq = penalties[:, 0:1], penalties[:, 1:2], penalties[:, 2:3]
    seen = in_prompt | (counts > 0)
    logits = torch.where(seen, torch.where(logits > 0, logits / rep, logits * rep), logits)
    return logits - freq * counts - pres * (counts > 0).float()


def apply_top_k_top_p(logits: torch.Tensor, top_k: torch.Tensor | None, top_p: torch.Tensor | None) -> torch.Tensor:
    """Keep each row's top_k largest logits, then the smallest set whose probability reaches top_p."""
    if top_k is None and top_p is None:
        return logits
    sorted_logits, order = logits.sort(dim=-1, descending=True)                        # [N, V]
    if top_k is not None:
        ranks = torch.arange(logits.shape[1], device=logits.device)[None, :]
        sorted_logits = sorted_logits.masked_fill(ranks >= top_k[:, None], float("-inf"))
    if top_p is not None:
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs          # mass strictly above each token
        drop = before > top_p[:, None]
        drop[:, 0] = False
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(1, order, sorted_logits)
