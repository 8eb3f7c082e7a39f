"""SamplingParams: how one request is decoded and when it stops; invalid values raise ValueError on construction."""

from __future__ import annotations

from dataclasses import dataclass, field


def _check(ok: bool, name: str, allowed: str, value: object) -> None:
    if not ok:
        raise ValueError(f"SamplingParams.{name} must be {allowed}, got {value!r}")


def _num(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass
class SamplingParams:
    """temperature 0 is greedy. top_k 0 (or -1), top_p 1 and min_p 0 disable those filters.

    repetition_penalty divides positive (multiplies negative) logits of tokens seen in prompt or output;
    presence_penalty / frequency_penalty subtract a constant / count-weighted amount for tokens already generated.
    `seed` makes this request's samples reproducible whatever else is batched with it (sample i uses seed + i).
    """

    n: int = 1
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int | None = None
    max_tokens: int = 16
    min_tokens: int = 0
    stop: str | list[str] | None = None
    stop_token_ids: list[int] = field(default_factory=list)
    ignore_eos: bool = False
    include_stop_str_in_output: bool = False
    logprobs: int | None = None           # number of top logprobs to return per token (the sampled one is added)
    bad_words: list[str] = field(default_factory=list)            # tokenized by the engine, with and without a leading space
    bad_words_token_ids: list[list[int]] = field(default_factory=list)
    skip_special_tokens: bool = True
    # False: no text at all (output text stays ""), only token ids; saves the per-token tokenizer calls (vLLM's
    # `detokenize`). Stop strings need text, so they need detokenize=True.
    detokenize: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.stop, str):
            self.stop = [self.stop]
        self.stop = list(self.stop or [])
        if self.top_k == -1:
            self.top_k = 0
        _check(isinstance(self.n, int) and self.n >= 1, "n", "an int >= 1", self.n)
        _check(_num(self.temperature) and 0.0 <= self.temperature <= 100.0, "temperature", "in [0, 100] (0 = greedy)", self.temperature)
        _check(isinstance(self.top_k, int) and self.top_k >= 0, "top_k", "an int >= 0 (0 or -1 = disabled)",
               self.top_k)
        _check(_num(self.top_p) and 0.0 < self.top_p <= 1.0, "top_p", "in (0, 1]", self.top_p)
        _check(_num(self.min_p) and 0.0 <= self.min_p <= 1.0, "min_p", "in [0, 1]", self.min_p)
        _check(_num(self.repetition_penalty) and 0.0 < self.repetition_penalty <= 10.0, "repetition_penalty", "in (0, 10] (1 = off)",
               self.repetition_penalty)
        _check(_num(self.presence_penalty) and -2.0 <= self.presence_penalty <= 2.0, "presence_penalty", "in [-2, 2]", self.presence_penalty)
        _check(_num(self.frequency_penalty) and -2.0 <= self.frequency_penalty <= 2.0, "frequency_penalty", "in [-2, 2]", self.frequency_penalty)
        _check(self.seed is None or isinstance(self.seed, int), "seed", "an int or None", self.seed)
        _check(isinstance(self.max_tokens, int) and self.max_tokens >= 1, "max_tokens", "an int >= 1",
               self.max_tokens)
        _check(isinstance(self.min_tokens, int) and 0 <= self.min_tokens <= self.max_tokens, "min_tokens",
               f"an int in [0, max_tokens={self.max_tokens}]", self.min_tokens)
        _check(all(isinstance(s, str) and s for s in self.stop), "stop", "non-empty strings", self.stop)
        _check(self.detokenize or not self.stop, "stop", "empty when detokenize=False (stop strings are matched "
               "against the decoded text)", self.stop)
        _check(all(isinstance(t, int) and t >= 0 for t in self.stop_token_ids), "stop_token_ids",
               "a list of token ids >= 0", self.stop_token_ids)
        _check(self.logprobs is None or (isinstance(self.logprobs, int) and 0 <= self.logprobs <= 20), "logprobs",
               "None or an int in [0, 20]", self.logprobs)
        _check(all(isinstance(w, str) and w for w in self.bad_words), "bad_words", "non-empty strings",
               self.bad_words)
        _check(all(len(w) > 0 and all(isinstance(t, int) and t >= 0 for t in w) for w in self.bad_words_token_ids),
               "bad_words_token_ids", "non-empty lists of token ids >= 0", self.bad_words_token_ids)

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0
