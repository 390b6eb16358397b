"""The command line: ``python -m flowdl <command>``."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Sequence
from pathlib import Path

from flowdl._cli.bench import add_bench_parser, run_bench
from flowdl._cli.fuzz import add_fuzz_parser, run_fuzz
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
        help="train a small dynamic graph on generated data and write what it made",
        description="Train a graph (a gate over three experts, a refinement loop) to map "
        "[a, b] to [a + b, a * b] on generated data, with the monitor's line per epoch and "
        "trend-driven learning-rate decisions, then write its drawing, curves, log, CSV, "
        "dashboard and checkpoint into the output folder.",
    )
    demo.add_argument(
        "--epochs", type=int, default=40, help="at most this many epochs (default: 40)"
    )
    demo.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    demo.add_argument(
        "--out",
        type=Path,
        default=Path("flowdl-demo"),
        help="folder for the outputs (default: ./flowdl-demo)",
    )
    demo.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for PyTorch (default: 1, fastest for the demo's tiny model; "
        "0 keeps PyTorch's own count)",
    )
    demo.add_argument(
        "--dashboard",
        action="store_true",
        help="serve the live dashboard on 127.0.0.1 (prints its URL) and keep it up "
        "after training until Enter",
    )
    add_bench_parser(commands)
    add_fuzz_parser(commands)
    return parser


def _wait_for_enter(url: str) -> None:
    """Keep the demo's dashboard up until Enter, Ctrl-C or the end of the input."""
    print(f"training is over; the dashboard stays at {url} until you press Enter", flush=True)
    with contextlib.suppress(EOFError, KeyboardInterrupt):
        input()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with `argv` (default: ``sys.argv[1:]``); return the exit code."""
    parser = _parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.command == "demo":
        from flowdl._cli.demo import run_demo

        if args.epochs < 1:
            parser.error(f"--epochs must be at least 1, got {args.epochs}")
        if args.threads < 0:
            parser.error(
                f"--threads must be at least 1 (or 0 for PyTorch's count), got {args.threads}"
            )
        result = run_demo(
            epochs=args.epochs,
            seed=args.seed,
            out=args.out,
            dashboard=args.dashboard,
            linger=_wait_for_enter,
            threads=args.threads or None,
        )
        return 0 if result.learned else 1
    if args.command == "bench":
        return run_bench(args, parser, argv)
    if args.command == "fuzz":
        return run_fuzz(args, parser)
    parser.print_help(sys.stderr)
    return 2
