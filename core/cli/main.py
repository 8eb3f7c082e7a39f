"""`ember` entry point: builds the argparse tree from the subcommand modules and turns user errors into exit 2."""

from __future__ import annotations

import argparse
import sys
from typing import Sequence

from ember.cli import bench, eval, generate, models, plugins, quantize

# Each module: add_parser(subparsers) registering its parser with set_defaults(func=run(args) -> exit code).
SUBCOMMANDS = (generate, models, plugins, bench, quantize, eval)

EPILOG = """examples:
  ember generate --model smollm2 --prompt "Write a haiku about embers" --chat
  ember models
  ember plugins list --json
  ember bench latency --model qwen3-8b --random-weights --batch-size 1

Run `ember COMMAND --help` for the options of each command."""


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit status 2."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from ember.plugins.registry import PluginError

    return (UserError, PluginError, ValueError, FileNotFoundError, NotADirectoryError, ImportError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ember", description="ember: a PyTorch-native LLM model zoo, quantization workbench and inference "
        "runtime; every model, backend and recipe is a plugin.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--debug", action="store_true", help="show full tracebacks instead of one-line errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in SUBCOMMANDS:
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\nember: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ember ... | head`
        return 0
    except _user_errors() as exc:
        if args.debug:
            raise
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        print(f"ember: error: {message} (--debug shows the traceback)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
