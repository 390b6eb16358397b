"""``python -m flowdl bench``: the options, checked, turned into a suite run and its reports."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def add_bench_parser(commands: Any) -> None:
    """Declare ``bench`` and its options on the subcommand registry `commands`."""
    bench = commands.add_parser(
        "bench",
        help="time floDl's ten models: hand-written PyTorch against flowdl",
        description="Train floDl's ten benchmark models written twice, in plain PyTorch and "
        "as flowdl graphs with the same weights, in interleaved rounds; also time go-torch's "
        "single operations and the executor's overhead per node. Writes Markdown (or JSON "
        "for a .json path).",
    )
    bench.add_argument(
        "--suite",
        choices=("models", "dynamic"),
        default="models",
        help="floDl's ten models (default), or the dynamic suite of issue 17 (switch, "
        "top-2 MoE, halting, heads, scan: hand-written with indexing, masks and "
        "torch.compile, against flowdl eager and fast; CPU, one thread by default)",
    )
    bench.add_argument(
        "--backend",
        default="inductor",
        help="--suite dynamic: torch.compile's backend for the compiled arms (default inductor)",
    )
    bench.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="--suite dynamic: time epochs by wall time (default) or by the process's CPU "
        "time (one thread on a shared machine: waiting for a core is not counted)",
    )
    bench.add_argument(
        "--models", default="all", help="comma-separated model names, or 'all' (default)"
    )
    bench.add_argument(
        "--scale",
        type=float,
        default=None,
        help="size factor: batch, widths and data sizes (default: 1 on CUDA, 0.25 on the CPU)",
    )
    bench.add_argument(
        "--rounds", type=int, default=None, help="timed epochs per side (default 20; dynamic 10)"
    )
    bench.add_argument("--warmup", type=int, default=2, help="untimed epochs per side (default 2)")
    bench.add_argument(
        "--batches",
        type=int,
        default=None,
        help="batches per epoch (default: 50 on CUDA, 20 on the CPU)",
    )
    bench.add_argument(
        "--device", default=None, help="cpu, cuda, cuda:1, ... (default: cuda when available)"
    )
    bench.add_argument(
        "--protocols",
        default="flodl,tuned",
        help="floDl's settings ('flodl'), tuned eager ('tuned'), or both (default)",
    )
    bench.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    bench.add_argument(
        "--ops",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time go-torch's single operations (default: yes)",
    )
    bench.add_argument(
        "--overhead",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="time the executor's overhead per node (default: yes)",
    )
    bench.add_argument(
        "--output",
        action="append",
        type=Path,
        help="report path, .md or .json; repeat for both (default: flowdl-bench.md)",
    )


def run_bench(
    args: argparse.Namespace, parser: argparse.ArgumentParser, argv: Sequence[str]
) -> int:
    """Check the options, run the suite, write the reports; return the exit code."""
    import torch

    from flowdl._bench.protocol import PROTOCOLS
    from flowdl._bench.report import write_report
    from flowdl._bench.suite import CPU_BATCHES, CPU_SCALE, SuiteConfig, parse_models, run_suite

    if args.suite == "dynamic":
        from flowdl._cli.bench_dynamic import run_dynamic_bench

        return run_dynamic_bench(args, parser, argv)
    if args.rounds is None:
        args.rounds = 20
    for option in ("rounds", "batches"):
        value = getattr(args, option)
        if value is not None and value < 1:
            parser.error(f"--{option} must be at least 1, got {value}")
    if args.warmup < 0:
        parser.error(f"--warmup must be at least 0, got {args.warmup}")
    if args.scale is not None and not args.scale > 0:
        parser.error(f"--scale must be positive, got {args.scale}")
    try:
        models = parse_models(args.models)
    except ValueError as error:
        parser.error(f"--models: {error}")
    keys = [k.strip() for k in args.protocols.split(",") if k.strip()]
    if not keys or any(k not in PROTOCOLS for k in keys):
        parser.error(f"--protocols: got {args.protocols!r}; choose from {', '.join(PROTOCOLS)}")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: this torch build sees no CUDA device")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    on_cpu = device.type == "cpu"
    config = SuiteConfig(
        models=models,
        protocols=tuple(PROTOCOLS[k] for k in dict.fromkeys(keys)),
        scale=args.scale if args.scale is not None else (CPU_SCALE if on_cpu else 1.0),
        batches=args.batches if args.batches is not None else (CPU_BATCHES if on_cpu else 50),
        warmup=args.warmup,
        rounds=args.rounds,
        device=device,
        ops=args.ops,
        overhead=args.overhead,
    )
    outputs = args.output or [Path("flowdl-bench.md")]
    command = shlex.join(["python", "-m", "flowdl", *argv])
    print(
        f"flowdl bench on {device}: {len(models)} models at scale {config.scale:g}, "
        f"{config.rounds} rounds of {config.batches} batches"
    )
    result = run_suite(config, command)
    for path in outputs:
        write_report(path, result)
        print(f"wrote {path}")
    return 0
