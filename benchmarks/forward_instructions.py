"""Instructions per forward of a tiny graph, counted by valgrind's callgrind, before and after
a change to the executor's loop (noise-free, unlike timings on a shared machine).

For each variant (the working tree's ``run_plan`` and the ``run_plan`` of the git
revision ``--before``, both loaded from their source the same way and swapped in),
Python runs the graph's forward ``--calls`` times and 0 times after 50 warm-up calls,
under ``valgrind --tool=callgrind`` with ``PYTHONHASHSEED=0`` and the garbage
collector off; the difference of the two totals
over ``--calls`` is the forward's count. The graphs: ``fl.Flow(torch.relu)`` (one
node) and a chain of four ``nn.Identity``, forward under ``no_grad``, one thread.

Run: ``python benchmarks/forward_instructions.py [--calls 2000] [--before cff00bf]``
(minutes: every run imports torch under valgrind).
"""

from __future__ import annotations

import argparse
import gc
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path


def child(variant: str, before: str, calls: int, graph_name: str) -> None:
    import torch
    from torch import nn

    import flowdl as fl
    from flowdl._executor import core

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from profiler_check_cost import run_plan_at

    torch.set_num_threads(1)
    # both variants loaded the same way (see run_plan_at), so only the code differs
    runner = run_plan_at(before if variant == "before" else None)
    core.run_plan = runner  # type: ignore[attr-defined]
    if graph_name == "relu":
        g = fl.Flow(torch.relu).build()
    else:
        flow = fl.Flow(nn.Identity())
        for _ in range(3):
            flow = flow.through(nn.Identity())
        g = flow.build()
    x = torch.randn(4, 4)
    with torch.no_grad():
        for _ in range(50):
            g(x)
        gc.disable()
        for _ in range(calls):
            g(x)


def count(variant: str, before: str, calls: int, graph_name: str) -> int:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "callgrind.out"
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                f"--callgrind-out-file={out}",
                sys.executable,
                __file__,
                "--child",
                variant,
                "--before",
                before,
                "--calls",
                str(calls),
                "--graph",
                graph_name,
            ],
            env=env,
            check=True,
            capture_output=True,
        )
        found = re.search(r"^(?:summary|totals): (\d+)", out.read_text(), re.MULTILINE)
        assert found is not None, "no total in callgrind's output"
        return int(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--before", default="cff00bf")
    parser.add_argument("--graph", default="", help="relu or identity4 (default: both)")
    parser.add_argument("--child", default="")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.before, args.calls, args.graph)
        return
    print(f"# instructions per forward (callgrind), {args.calls} calls; before = {args.before}")
    print("| graph | before | after | change |")
    print("|---|---:|---:|---:|")
    for graph_name in [args.graph] if args.graph else ["relu", "identity4"]:
        per_call = {}
        for variant in ("before", "after"):
            total = count(variant, args.before, args.calls, graph_name)
            empty = count(variant, args.before, 0, graph_name)
            per_call[variant] = (total - empty) / args.calls
        change = per_call["after"] - per_call["before"]
        print(
            f"| {graph_name} | {per_call['before']:,.0f} | {per_call['after']:,.0f} | "
            f"{change:+,.0f} ({100 * change / per_call['before']:+.2f} %) |"
        )


if __name__ == "__main__":
    main()
