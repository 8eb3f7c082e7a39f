"""`ember plugins list`: every registered component with the distribution that provides it, and broken plugins."""

from __future__ import annotations

import argparse
import json

EPILOG = """examples:
  ember plugins list                      # table of every registered component
  ember plugins list --kind model         # only model architectures
  ember plugins list --json | jq '.failures'
  EMBER_PLUGINS=ember-model-granite ember plugins list   # load only the named third-party plugins

A plugin that fails to import or register is listed under "failed plugins" with its error; the others still load."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plugins", help="inspect installed plugins", description="Inspect ember's plugins.",
                       epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    psub = p.add_subparsers(dest="plugins_command", metavar="ACTION")
    lst = psub.add_parser("list", help="list every registered component and failed plugins",
                          description="List every registered component (kind, name, distribution, version) "
                          "and every plugin that failed to load.",
                          epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    lst.add_argument("--json", action="store_true", help="print machine-readable JSON")
    lst.add_argument("--kind", help="only this kind (model, model_alias, attention_backend, quant_recipe, ...)")
    lst.set_defaults(func=run_list)
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])


def collect(kind: str | None = None) -> dict:
    from ember.plugins import get_plugin_manager
    from ember.plugins.registry import KINDS

    if kind is not None and kind not in KINDS:
        from ember.plugins.registry import unknown_message
        raise ValueError(unknown_message("component kind", kind, list(KINDS)))
    manager = get_plugin_manager()
    return {
        "components": [{"kind": c.kind, "name": c.name, "target": c.target, "distribution": c.distribution,
                        "version": c.version, "plugin": c.metadata.get("_plugin"),
                        "metadata": {k: v for k, v in c.metadata.items() if not k.startswith("_")}}
                       for c in manager.registry.components(kind)],
        "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version}
                    for p in manager.plugins],
        "failures": [{"plugin": f.plugin, "distribution": f.distribution, "error": f.error}
                     for f in manager.failures],
    }


def run_list(args: argparse.Namespace) -> int:
    data = collect(args.kind)
    if args.json:
        print(json.dumps(data, indent=2, default=str))
        return 0
    rows = [(c["kind"], c["name"], c["distribution"], c["version"]) for c in data["components"]]
    print(_table(("KIND", "NAME", "DISTRIBUTION", "VERSION"), rows))
    if data["failures"]:
        print("\nfailed plugins:")
        for f in data["failures"]:
            print(f"  {f['plugin']} ({f['distribution']}): {f['error']}")
    return 0


def _table(header: tuple[str, ...], rows: list[tuple]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return "\n".join("  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in [header, *rows])
