"""What the torch-profiler check costs the executor's hot loop: one flag read per forward.

Since issue 16 every eager forward reads torch's own "is a profiler recording" flag
(``torch.autograd.profiler._is_profiler_enabled``) once, to run each node inside
``record_function(<node path>)`` when one is. This script measures that read on the
forward of a tiny graph, where the executor's own cost is the largest share: the same
graph runs with the current ``run_plan`` and with the ``run_plan`` of a git revision
from before the check (``--before``, default ``cff00bf``: the branch's base), swapped
in per round. Rounds alternate the arms (A B C, C B A, ...) in one process, with
``nn.Sequential`` holding the same layers for scale; the report gives the median
(scaled MAD) of microseconds per forward and the paired, round-by-round difference.

Run: ``python benchmarks/profiler_check_cost.py [--layers 4] [--identity] [--before REV]``
"""

from __future__ import annotations

import argparse
import copy
import platform
import subprocess
import timeit
import types
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

import flowdl as fl
from flowdl._bench.protocol import interleave, repeated
from flowdl._bench.stats import Summary
from flowdl._executor import core, steps


def run_plan_at(revision: str | None) -> Callable[..., None]:
    """`run_plan` as `revision` of ``steps.py`` wrote it (read with ``git show``), or as
    the working tree has it (``None``); both are loaded the same way, so only the code
    differs."""
    root = Path(__file__).resolve().parent.parent
    if revision is None:
        source = (root / "src" / "flowdl" / "_executor" / "steps.py").read_text()
    else:
        source = subprocess.run(
            ["git", "show", f"{revision}:src/flowdl/_executor/steps.py"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    module = types.ModuleType("steps_before")
    exec(compile(source, f"{revision or 'worktree'}:steps.py", "exec"), module.__dict__)
    function: Callable[..., None] = module.run_plan
    return function


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--identity", action="store_true", help="nn.Identity layers")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--calls-per-round", type=int, default=2000)
    parser.add_argument("--before", default="cff00bf", help="git revision without the check")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    if args.identity:
        modules: list[nn.Module] = [nn.Identity() for _ in range(args.layers)]
    else:
        modules = [
            nn.Linear(args.width, args.width) if i % 2 == 0 else nn.ReLU()
            for i in range(args.layers)
        ]
    sequential = nn.Sequential(*modules)
    first, *rest = copy.deepcopy(modules)
    flow = fl.Flow(first)
    for module in rest:
        flow = flow.through(module)
    g = flow.build()
    x = torch.randn(8, args.width)
    before, after = run_plan_at(args.before), run_plan_at(None)
    with torch.no_grad():
        want = sequential(x)
        for plan_runner in (before, after):
            core.run_plan = plan_runner  # type: ignore[attr-defined]
            torch.testing.assert_close(g(x), want, rtol=0, atol=0)

    def arm(model: nn.Module, runner: Callable[..., None] | None) -> Callable[[], None]:
        block = repeated(lambda: model(x), args.calls_per_round)

        def run() -> None:
            if runner is not None:
                core.run_plan = runner  # type: ignore[attr-defined]
            with torch.no_grad():
                block()

        return run

    arms = {
        "nn.Sequential": arm(sequential, None),
        f"graph, run_plan of {args.before} (no check)": arm(g, before),
        "graph, run_plan now (profiler check)": arm(g, after),
    }
    times = interleave(arms, args.rounds, warmup=1, device=torch.device("cpu"))
    core.run_plan = steps.run_plan  # type: ignore[attr-defined]
    per_call = {name: [t / args.calls_per_round * 1e6 for t in ts] for name, ts in times.items()}
    kind = "nn.Identity" if args.identity else f"Linear({args.width}, {args.width}) / ReLU"
    print(f"# {args.layers} layers ({kind}), batch 8, forward under no_grad, 1 thread")
    print(
        f"# torch {torch.__version__}, Python {platform.python_version()}, "
        f"{platform.processor() or platform.machine()}"
    )
    print(f"# {args.rounds} interleaved rounds x {args.calls_per_round} calls; median (scaled MAD)")
    print("| arm | us per forward |")
    print("|---|---|")
    for name, values in per_call.items():
        s = Summary.of(values)
        print(f"| {name} | {s.median:.3f} ({s.spread:.3f}) |")
    names = list(per_call)
    diff = Summary.of([a - b for a, b in zip(per_call[names[2]], per_call[names[1]], strict=True)])
    print(
        f"\npaired difference (now - before): {diff.median * 1e3:+.1f} ns ({diff.spread * 1e3:.1f})"
    )
    flag = steps._TORCH_PROFILER
    number = 200_000
    read = min(
        timeit.Timer("flag._is_profiler_enabled", globals={"flag": flag}).repeat(5, number)
    ) - min(timeit.Timer("flag", globals={"flag": flag}).repeat(5, number))
    print(f"the flag read alone (timeit, net of the loop): {read / number * 1e9:.0f} ns")


if __name__ == "__main__":
    main()
