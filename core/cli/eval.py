"""`ember eval ppl`: perplexity of any model or checkpoint (quantized ones included) on a registered text."""

from __future__ import annotations

import argparse
import json


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("eval", help="evaluate a model (perplexity)", description="Evaluate a model or checkpoint.")
    evsub = p.add_subparsers(dest="eval_command", metavar="METRIC", required=True)
    ppl = evsub.add_parser("ppl", help="perplexity on a held-out text, as `ember quantize` reports it")
    ppl.add_argument("--model", "-m", required=True, help="alias, local dir (quantized or not), .gguf or repo id")
    ppl.add_argument("--dataset", default="wikipedia-sample", help="registered text or .txt/.jsonl/.parquet")
    ppl.add_argument("--split", default="eval", choices=("eval", "calib", "all"))
    ppl.add_argument("--windows", type=int, default=16, help="number of windows (default 16)")
    ppl.add_argument("--seq-len", type=int, default=512, help="tokens per window (default 512)")
    ppl.add_argument("--batch-size", type=int, default=4)
    ppl.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    ppl.add_argument("--json", action="store_true", help="print one JSON object")
    ppl.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ember.evaluation import perplexity

    r = perplexity(args.model, args.dataset, seq_len=args.seq_len, num_windows=args.windows, split=args.split,
                   batch_size=args.batch_size, device=args.device)
    out = {"model": args.model, "dataset": args.dataset, "ppl": r.ppl, "nll": r.nll, "tokens": r.tokens,
           "windows": r.windows}
    print(json.dumps(out) if args.json else f"perplexity {r.ppl:.4f} ({r.tokens} tokens, {r.windows} windows "
          f"of {args.seq_len}, {args.dataset})")
    return 0
