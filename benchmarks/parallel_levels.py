"""Parallel branches on CPU: do the nodes of one level win from running on threads?

A graph splits into `--branches` independent branches (``Linear -> GELU -> Linear``)
merged by ``fl.Add()``; the split's level holds one node per branch. The level is
timed three ways in one process, interleaved: each branch alone (their sum is the
sequential cost), the level run sequentially, and the level's nodes run on a thread
pool (PyTorch releases the GIL inside its kernels). The report gives the level wall
time divided by the sum of its branches: 1.0 is sequential, 1/branches is perfect
overlap. It runs under two settings: PyTorch's intra-op threads at the machine's
core count (the default), and at one thread per op, where the cores are free for
branch-level parallelism.

This is an experiment, not an executor mode: flowdl keeps the sequential level on
CPU unless threads win here (see docs/benchmark.md for the figures).

Run: ``python benchmarks/parallel_levels.py [--branches 4] [--dim 512] [--batch 256]``
"""

from __future__ import annotations

import argparse
import os
import platform
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import nn

import flowdl as fl
from flowdl._bench.protocol import interleave, repeated
from flowdl._bench.stats import Summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--branches", type=int, default=4)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--steps-per-round", type=int, default=10)
    args = parser.parse_args()
    torch.manual_seed(0)
    d = args.dim
    branches = [
        nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d)) for _ in range(args.branches)
    ]
    graph = fl.Flow(nn.Identity()).split(*branches).merge(fl.Add()).build()
    level = next(lv for lv in graph._plan.levels if len(lv) == args.branches)
    steps = [graph._plan.steps[i] for i in level]
    x = torch.randn(args.batch, d)
    pool = ThreadPoolExecutor(max_workers=args.branches)

    def run_step(step: tuple) -> torch.Tensor:  # type: ignore[type-arg]
        fn = step[0]
        return fn(x)

    def sequential() -> None:
        with torch.no_grad():
            for step in steps:
                run_step(step)

    def threaded() -> None:
        with torch.no_grad():
            list(pool.map(run_step, steps))

    def alone(k: int) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                run_step(steps[k])

        return run

    cores = os.cpu_count() or 1
    print(
        f"# level of {args.branches} branches Linear({d},{d})-GELU-Linear({d},{d}), "
        f"batch {args.batch}, forward (no_grad)"
    )
    print(
        f"# torch {torch.__version__}, Python {platform.python_version()}, "
        f"{platform.processor() or platform.machine()}, {cores} core(s)"
    )
    for threads in sorted({cores, 1}, reverse=True):
        torch.set_num_threads(threads)
        cases = {"sequential": sequential, "threads": threaded}
        cases.update({f"branch {k}": alone(k) for k in range(args.branches)})
        per = args.steps_per_round

        times = interleave(
            {name: repeated(step, per) for name, step in cases.items()},
            args.rounds,
            1,
            torch.device("cpu"),
        )
        med = {name: Summary.of(t).median / per for name, t in times.items()}
        total = sum(med[f"branch {k}"] for k in range(args.branches))
        print(
            f"intra-op threads {threads}: sum of branches {total * 1e6:8.1f} us  "
            f"sequential level {med['sequential'] / total:.3f}  "
            f"threaded level {med['threads'] / total:.3f}  (level wall / sum of branches)"
        )
    pool.shutdown()


if __name__ == "__main__":
    main()
