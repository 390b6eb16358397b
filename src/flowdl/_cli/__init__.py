"""The command line: ``python -m flowdl <command>``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from flowdl._cli.bench import add_bench_parser, run_bench
from flowdl._version import __version__


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flowdl",
        description="flowdl: dynamic neural networks as graphs, on PyTorch.",
    )
    parser.add_argument("--version", action="version", version=f"flowdl {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="command")
    demo = commands.add_parser(
        "demo",
        help="build a small graph and train it on generated data",
        description="Build a small graph and train it to map [a, b] to [a, a + b] on "
        "generated data, printing the loss as it falls.",
    )
    demo.add_argument("--epochs", type=int, default=50, help="training epochs (default: 50)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    add_bench_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default: ``sys.argv[1:]``); return the exit code."""
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from flowdl._cli.demo import run_demo

        if args.epochs < 1:
            parser.error(f"--epochs must be at least 1, got {args.epochs}")
        result = run_demo(epochs=args.epochs, seed=args.seed)
        return 0 if result.learned else 1
    if args.command == "bench":
        return run_bench(args, parser, argv)
    parser.print_help(sys.stderr)
    return 2
