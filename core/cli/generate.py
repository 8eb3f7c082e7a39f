"""`ember generate`: load a model (alias, dir, .gguf or repo id) and stream a completion to the terminal."""

from __future__ import annotations

import argparse
import sys

from ember.config import KV_CACHE_DTYPES

EPILOG = """examples:
  ember generate --model smollm2 --prompt "Write a haiku about embers" --chat
  ember generate --model smollm2 --prompt "The capital of France is" --max-tokens 16
  ember generate --model ./my-checkpoint --prompt "Once upon a time" --temperature 0.8 --top-p 0.95 --seed 0
  echo "Explain paged attention" | ember generate --model Qwen/Qwen3-0.6B --prompt - --chat

--model takes a zoo alias (`ember models`), a local checkpoint directory, a .gguf file (converted once and
cached in $EMBER_CACHE, default ~/.cache/ember) or a Hugging Face repo id (local HF cache first, then the hub).
--temperature 0 (the default) is greedy decoding."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate text from a prompt, streamed as it is produced",
                       description="Generate text from one prompt and stream it to stdout as it is produced.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", "-m", required=True, help="alias, local dir, .gguf file or org/name repo id")
    p.add_argument("--prompt", "-p", required=True, help="the prompt; '-' reads it from stdin")
    p.add_argument("--chat", action="store_true", help="wrap the prompt as a user message in the chat template")
    p.add_argument("--system", help="system message (with --chat)")
    p.add_argument("--max-tokens", type=_positive_int, default=128, help="new tokens at most (default 128)")
    p.add_argument("--temperature", type=_non_negative_float, default=0.0, help="0 = greedy (default 0)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass (default 1.0)")
    p.add_argument("--top-k", type=int, default=-1, help="sample among the k most likely tokens; -1 = all")
    p.add_argument("--seed", type=int, default=None, help="random seed for sampling")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="where to run (default auto: cuda when a GPU is visible, else cpu)")
    p.add_argument("--dtype", default="auto", choices=("auto", "float32", "bfloat16", "float16"),
                   help="weights and activations dtype (default auto: float32 on CPU, the checkpoint's on GPU)")
    p.add_argument("--kv-cache-dtype", default="auto", choices=KV_CACHE_DTYPES,
                   help="KV-cache dtype (default auto: fp8 when the checkpoint declares an FP8 KV cache, else the "
                        "model dtype); fp8 = e4m3 with the checkpoint's k/v scales, 1.0 where it has none")
    p.add_argument("--revision", help="hub revision (branch, tag or commit) for a repo id")
    p.add_argument("--trust-remote-code", action="store_true", help="allow checkpoint-provided code")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    if not prompt.strip():
        raise ValueError("the prompt is empty; pass --prompt TEXT or pipe text with --prompt -")
    if args.system and not args.chat:
        raise ValueError("--system needs --chat")

    from ember import LLM, SamplingParams

    params = SamplingParams(max_tokens=args.max_tokens, temperature=args.temperature, top_p=args.top_p,
                            top_k=args.top_k, seed=args.seed)
    # LLM resolves the name (alias, dir, .gguf, repo id) through ember.loader.resolve.resolve_model.
    llm = LLM(args.model, dtype=args.dtype, device=args.device, max_num_seqs=1, revision=args.revision,
              trust_remote_code=args.trust_remote_code, kv_cache_dtype=args.kv_cache_dtype)
    if args.chat:
        messages = [{"role": "system", "content": args.system}] if args.system else []
        prompt = chat_prompt_ids(llm, messages + [{"role": "user", "content": prompt}])
    for chunk in llm.generate_stream(prompt, params):
        sys.stdout.write(new_text(chunk))
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def chat_prompt_ids(llm, messages: list[dict]) -> list[int]:
    """Token ids of `messages` through the chat template (which spells out BOS itself: no special tokens added)."""
    tokenizer = llm.tokenizer
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("this model's tokenizer has no chat template; drop --chat and pass plain text")
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def new_text(chunk) -> str:
    """The text a streamed output adds."""
    return chunk.outputs[0].delta_text


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value
