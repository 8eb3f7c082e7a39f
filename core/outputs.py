"""What generation returns: one RequestOutput per prompt holding n CompletionOutputs."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CompletionOutput:
    """One sample. `delta_text` / `delta_token_ids` hold what is new since the previous streamed output."""

    index: int
    text: str
    token_ids: list[int]
    logprobs: list[dict[int, float]] | None = None   # per generated token: top-N ids and the sampled id -> logprob
    finish_reason: str | None = None                  # "stop" | "length" | "error" | None while running
    stop_reason: int | str | None = None              # the stop token id or stop string that ended it
    delta_text: str = ""
    delta_token_ids: list[int] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return self.finish_reason is not None


@dataclass
class RequestOutput:
    request_id: str
    prompt: str | None
    prompt_token_ids: list[int]
    outputs: list[CompletionOutput]
    finished: bool
    error: str | None = None
