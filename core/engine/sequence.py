"""Sequence (one sample being generated) and Request (a prompt and its n sequences)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum, auto

import torch

from ember.engine.detokenizer import IncrementalDetokenizer
from ember.sampling_params import SamplingParams


# Stands in for a token sampled by a launched step whose result has not reached the host yet (async scheduling):
# the next step's input is read from the device, and the real id replaces this once it arrives.
PLACEHOLDER = -1


class SequenceStatus(Enum):
    WAITING = auto()
    RUNNING = auto()
    FINISHED = auto()


class Sequence:
    """Tokens (prompt + generated), how many have KV computed, the blocks holding them and the decoded text."""

    def __init__(self, seq_id: int, request: "Request", index: int, prompt_token_ids: list[int],
                 generator: torch.Generator | None, detokenizer: IncrementalDetokenizer | None,
                 leader: "Sequence | None" = None) -> None:
        self.seq_id = seq_id
        self.request = request
        self.index = index                      # which of the request's n samples
        self.token_ids = list(prompt_token_ids)
        self.num_prompt_tokens = len(prompt_token_ids)
        self.num_computed_tokens = 0
        self.block_table: list[int] = []
        self.block_hashes: list[bytes] = []     # hashes of the leading full blocks already registered
        self.status = SequenceStatus.WAITING
        self.generator = generator
        self.detokenizer = detokenizer          # None: detokenize=False, text stays ""
        self.leader = leader                    # n > 1: waits until this sibling's prompt is cached
        self.logprobs: list[dict[int, float]] | None = [] if request.params.logprobs is not None else None
        self.finish_reason: str | None = None
        self.stop_reason: int | str | None = None
        self.text = ""                          # decoded output, cut at a stop string
        self.num_emitted_tokens = 0             # streaming: how much was already reported
        self.num_emitted_chars = 0
        self.pending_row = -1                   # async scheduling: this sequence's row in the step in flight

    @property
    def params(self) -> SamplingParams:
        return self.request.params

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)

    @property
    def output_token_ids(self) -> list[int]:
        return self.token_ids[self.num_prompt_tokens:]

    @property
    def num_output_tokens(self) -> int:
        return len(self.token_ids) - self.num_prompt_tokens

    @property
    def is_finished(self) -> bool:
        return self.status is SequenceStatus.FINISHED

    @property
    def is_prefilling(self) -> bool:
        return self.num_computed_tokens < self.num_prompt_tokens

    @property
    def waits_for_leader(self) -> bool:
        """n > 1 siblings start once the leader's prompt blocks are computed, so they hit the prefix cache."""
        return self.leader is not None and not self.leader.is_finished and self.leader.is_prefilling

    def finish(self, reason: str, stop_reason: int | str | None = None) -> None:
        self.status = SequenceStatus.FINISHED
        self.finish_reason = reason
        self.stop_reason = stop_reason


@dataclass
class Request:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    params: SamplingParams
    bad_words_ids: list[list[int]] = field(default_factory=list)
    seqs: list[Sequence] = field(default_factory=list)
    error: str | None = None
    stream: bool = True          # False: the engine reports this request once, when it has finished

    def __post_init__(self) -> None:
        p = self.params
        # Greedy with nothing that edits logits: sampling is one argmax, no per-step sampling tensors.
        self.plain_greedy = (p.greedy and p.logprobs is None and not self.bad_words_ids and p.min_tokens == 0
                             and p.repetition_penalty == 1.0 and not p.presence_penalty and not p.frequency_penalty)
        # Sampling that never reads the token history or returns logprobs can run one step ahead of the host
        # (async scheduling): penalties, bad words and min_tokens bans would see a history one token short.
        self.history_free = (p.logprobs is None and not self.bad_words_ids and p.min_tokens == 0
                             and p.repetition_penalty == 1.0 and not p.presence_penalty and not p.frequency_penalty)

    @property
    def finished(self) -> bool:
        return all(s.is_finished for s in self.seqs)
