"""After sampling: append the token, detokenize, apply stop conditions, and build RequestOutputs."""

from __future__ import annotations

from ember.engine.sequence import Request, Sequence
from ember.outputs import CompletionOutput, RequestOutput


def append_token(seq: Sequence, token: int, logprobs: dict[int, float] | None, eos_ids: frozenset[int] | list[int],
                 max_model_len: int) -> None:
    """Add one sampled token to `seq` and finish it if a stop condition holds (vLLM's order of checks).
    Runs once per sequence per step: kept to plain attribute reads (no properties, no copies)."""
    p = seq.request.params
    ids = seq.token_ids
    ids.append(token)
    if logprobs is not None and seq.logprobs is not None:
        seq.logprobs.append(logprobs)
    delta = ""
    if seq.detokenizer is not None:
        delta = seq.detokenizer.add(token)
        if delta:
            seq.text += delta
    num_out = len(ids) - seq.num_prompt_tokens
    if num_out >= p.min_tokens:
        if not p.ignore_eos and token in eos_ids:
            return _finish(seq, "stop", None)
        if p.stop_token_ids and token in p.stop_token_ids:
            return _finish(seq, "stop", token)
        if delta and p.stop and _cut_at_stop_string(seq, len(delta)):
            return
    if num_out >= p.max_tokens or len(ids) >= max_model_len:
        _finish(seq, "length", None)


def _finish(seq: Sequence, reason: str, stop_reason: int | str | None) -> None:
    if seq.detokenizer is not None:
        seq.text += seq.detokenizer.flush()
    seq.finish(reason, stop_reason)


def _cut_at_stop_string(seq: Sequence, delta_len: int) -> bool:
    """Look for a stop string overlapping the new text; truncate the text there and finish."""
    p = seq.params
    longest = max(len(s) for s in p.stop)
    start = max(0, len(seq.text) - delta_len - longest + 1)
    hits = [(seq.text.find(s, start), s) for s in p.stop]
    hits = [(i, s) for i, s in hits if i >= 0]
    if not hits:
        return False
    idx, stop = min(hits)
    seq.text = seq.text[:idx + (len(stop) if p.include_stop_str_in_output else 0)]
    seq.finish("stop", stop)
    return True


def _holdback(seq: Sequence) -> int:
    """Characters a running sequence keeps unreported: they might still become the start of a stop string."""
    if seq.is_finished or not seq.params.stop:
        return 0
    return max(len(s) for s in seq.params.stop) - 1


def make_output(req: Request) -> RequestOutput:
    """Cumulative state of every sample plus what is new since the previous call (for streaming)."""
    outs = []
    for seq in req.seqs:
        text = seq.text
        visible = max(seq.num_emitted_chars, len(text) - _holdback(seq)) if text else 0
        out_ids = seq.token_ids[seq.num_prompt_tokens:]          # a fresh list: the caller may keep it
        outs.append(CompletionOutput(
            index=seq.index, text=text[:visible] if visible != len(text) else text, token_ids=out_ids,
            logprobs=list(seq.logprobs) if seq.logprobs is not None else None,
            finish_reason=seq.finish_reason, stop_reason=seq.stop_reason,
            delta_text=text[seq.num_emitted_chars:visible] if visible else "",
            delta_token_ids=out_ids[seq.num_emitted_tokens:]))
        seq.num_emitted_chars = visible
        seq.num_emitted_tokens = len(out_ids)
    return RequestOutput(request_id=req.request_id, prompt=req.prompt, prompt_token_ids=req.prompt_token_ids,
                         outputs=outs, finished=req.finished, error=req.error)
