"""`ember bench ...` without the console script (GPU machines run the tree from PYTHONPATH):

    python benchmarks/bench_cli.py latency --model qwen3-8b --random-weights
"""

import argparse
import sys

from ember.cli import bench

parser = argparse.ArgumentParser(prog="ember")
bench.add_parser(parser.add_subparsers(dest="command"))
args = parser.parse_args(["bench", *sys.argv[1:]])
sys.exit(args.func(args))
