"""``python -m flowdl bench --suite dynamic``: the options checked, the suite run, the report."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from pathlib import Path


def run_dynamic_bench(
    args: argparse.Namespace, parser: argparse.ArgumentParser, argv: Sequence[str]
) -> int:
    """Run the dynamic suite as the options say; print and write its Markdown report."""
    import torch

    from flowdl._bench.dynamic.models import DYNAMIC_MODELS
    from flowdl._bench.dynamic.report import markdown, write_dynamic_report
    from flowdl._bench.dynamic.run import DynamicConfig, run_dynamic

    rounds = 10 if args.rounds is None else args.rounds
    batches = 8 if args.batches is None else args.batches
    for option, value in (("rounds", rounds), ("batches", batches)):
        if value < 1:
            parser.error(f"--{option} must be at least 1, got {value}")
    if args.warmup < 0:
        parser.error(f"--warmup must be at least 0, got {args.warmup}")
    scale = 1.0 if args.scale is None else args.scale
    if not scale > 0:
        parser.error(f"--scale must be positive, got {args.scale}")
    if args.models == "all":
        models = tuple(DYNAMIC_MODELS)
    else:
        models = tuple(n.strip() for n in args.models.split(",") if n.strip())
        unknown = [n for n in models if n not in DYNAMIC_MODELS]
        if unknown or not models:
            parser.error(
                f"--models: unknown dynamic model {', '.join(map(repr, unknown)) or '(none)'}; "
                f"the dynamic models are: {', '.join(DYNAMIC_MODELS)} (or 'all')"
            )
    device = torch.device(args.device or "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: this torch build sees no CUDA device")
    torch.set_num_threads(1 if args.threads is None else args.threads)
    config = DynamicConfig(
        models=models,
        batch=max(1, round(256 * scale)),
        dim=max(16, 16 * round(128 * scale / 16)),  # 16 heads
        batches=batches,
        warmup=args.warmup,
        rounds=rounds,
        device=device,
        backend=args.backend,
        clock=args.clock,
    )
    command = shlex.join(["python", "-m", "flowdl", *argv])
    print(
        f"flowdl bench --suite dynamic on {device}: {len(models)} models, batch {config.batch}, "
        f"width {config.dim}, {rounds} rounds of {batches} batches"
    )
    result = run_dynamic(config, command)
    text = markdown(result)
    print(text)
    for path in args.output or [Path("flowdl-bench-dynamic.md")]:
        write_dynamic_report(path, result)
        print(f"wrote {path}")
    return 0
