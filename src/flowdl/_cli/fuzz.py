"""``python -m flowdl fuzz``: random graphs against an independent interpreter."""

from __future__ import annotations

import argparse
import sys
from typing import Any

FAST_DEFAULT = 20
"""How many graphs ``--fast`` without a number checks in fast mode (each compiles)."""


def add_fuzz_parser(commands: Any) -> None:
    """Declare ``fuzz`` and its options on the subcommand registry `commands`."""
    fuzz = commands.add_parser(
        "fuzz",
        help="build random graphs over every construct and check them against an "
        "independent interpreter",
        description="Draw random graph descriptions (loops with per-sample and whole-batch "
        "halting, stateful bodies, gates, switches, splits, maps, references, inputs, nested "
        "graphs; some invalid on purpose), build each with fl.Flow, call it several times "
        "in float64, and compare outputs, gradients, tags and iterations with a plain-torch "
        "interpreter of the same description. Invalid descriptions must raise "
        "fl.BuildError. Exits with 1 when anything mismatched or crashed.",
    )
    fuzz.add_argument("--graphs", type=int, default=200, help="how many graphs (default: 200)")
    fuzz.add_argument(
        "--seed", type=int, default=0, help="the first graph's seed; graph i uses seed + i"
    )
    fuzz.add_argument(
        "--fast",
        type=int,
        nargs="?",
        const=FAST_DEFAULT,
        default=0,
        metavar="N",
        help="also check the first N valid graphs in fast mode, g.compile(backend='eager') "
        f"(default N: {FAST_DEFAULT}; none without the option)",
    )
    fuzz.add_argument(
        "--no-shrink",
        dest="shrink",
        action="store_false",
        help="report failures as drawn, without shrinking them to smaller reproducers",
    )
    fuzz.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (default: 1; the graphs are tiny)"
    )


def run_fuzz(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    """Check the options, fuzz, print the report; 1 when something failed, else 0."""
    import torch

    from flowdl._fuzz.run import fuzz

    if args.graphs < 1:
        parser.error(f"--graphs must be at least 1, got {args.graphs}")
    if args.fast < 0:
        parser.error(f"--fast must be at least 0, got {args.fast}")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.seed < 0:
        parser.error(f"--seed must be at least 0, got {args.seed}")
    torch.set_num_threads(args.threads)
    tty = sys.stderr.isatty()

    def progress(done: int, failures: int) -> None:
        if tty and (done % 50 == 0 or done == args.graphs):
            print(f"\r{done}/{args.graphs} graphs, {failures} failures", end="", file=sys.stderr)
            if done == args.graphs:
                print(file=sys.stderr)

    report = fuzz(args.graphs, args.seed, args.fast, shrinking=args.shrink, progress=progress)
    print("\n".join(report.lines()))
    return 0 if report.ok else 1
