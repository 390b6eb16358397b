"""Executor overhead: a 20-node chain graph against the same `nn.Sequential`.

Both models hold identical weights and are checked to compute the same output
before timing. Rounds alternate (A B A B ...) in one process; each round times a
block of steps; the report gives the median and the median absolute deviation (MAD)
of the per-step times, and the ratio of medians.

Run: ``python benchmarks/chain_overhead.py [--width 64] [--batch 32] [--rounds 30]``
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time
from collections.abc import Callable

import torch
from torch import nn

import flowdl as fl


def build_pair(width: int, n_nodes: int) -> tuple[nn.Sequential, fl.Graph]:
    layers: list[nn.Module] = []
    for i in range(n_nodes):
        layers.append(nn.Linear(width, width) if i % 2 == 0 else nn.ReLU())
    sequential = nn.Sequential(*layers)
    twins = copy.deepcopy(layers)
    flow = fl.Flow(twins[0])
    for layer in twins[1:]:
        flow = flow.through(layer)
    return sequential, flow.build()


def train_step(
    model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> None:
    loss = nn.functional.mse_loss(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def median_mad(values: list[float]) -> tuple[float, float]:
    med = statistics.median(values)
    return med, statistics.median(abs(v - med) for v in values)


def measure(
    steps: dict[str, Callable[[], None]], rounds: int, per_round: int, warmup: int
) -> dict[str, list[float]]:
    for step in steps.values():
        for _ in range(warmup):
            step()
    times: dict[str, list[float]] = {name: [] for name in steps}
    for r in range(rounds):
        names = list(steps) if r % 2 == 0 else list(reversed(steps))
        for name in names:
            step = steps[name]
            start = time.perf_counter()
            for _ in range(per_round):
                step()
            times[name].append((time.perf_counter() - start) / per_round)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--steps-per-round", type=int, default=50)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    sequential, graph = build_pair(args.width, args.nodes)
    x, y = torch.randn(args.batch, args.width), torch.randn(args.batch, args.width)
    torch.testing.assert_close(graph(x), sequential(x), rtol=0, atol=0)
    opt_seq = torch.optim.SGD(sequential.parameters(), lr=1e-3)
    opt_graph = torch.optim.SGD(graph.parameters(), lr=1e-3)

    def fwd(model: nn.Module) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                model(x)

        return run

    ident_seq = nn.Sequential(*[nn.Identity() for _ in range(args.nodes)])
    flow = fl.Flow(nn.Identity())
    for _ in range(args.nodes - 1):
        flow = flow.through(nn.Identity())
    ident_graph = flow.build()

    cases = {
        "train step": {
            "nn.Sequential": lambda: train_step(sequential, opt_seq, x, y),
            "flowdl Graph": lambda: train_step(graph, opt_graph, x, y),
        },
        "forward (no_grad)": {"nn.Sequential": fwd(sequential), "flowdl Graph": fwd(graph)},
        # nn.Identity nodes do no work: the difference is the executor's own cost.
        "Identity forward": {"nn.Sequential": fwd(ident_seq), "flowdl Graph": fwd(ident_graph)},
    }
    print(
        f"# {args.nodes}-node chain (Linear({args.width}, {args.width}) / ReLU), batch {args.batch}"
    )
    print(
        f"# torch {torch.__version__}, Python {platform.python_version()}, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s)"
    )
    print(f"# {args.rounds} interleaved rounds x {args.steps_per_round} steps")
    for case, steps in cases.items():
        times = measure(steps, args.rounds, args.steps_per_round, warmup=args.steps_per_round)
        (seq_med, seq_mad), (g_med, g_mad) = (
            median_mad(times["nn.Sequential"]),
            median_mad(times["flowdl Graph"]),
        )
        per_node = (g_med - seq_med) / args.nodes * 1e6
        print(
            f"{case:18s} sequential {seq_med * 1e6:8.1f} us (MAD {seq_mad * 1e6:5.1f})  "
            f"graph {g_med * 1e6:8.1f} us (MAD {g_mad * 1e6:5.1f})  "
            f"ratio {g_med / seq_med:.3f}  overhead {per_node:+.2f} us/node"
        )


if __name__ == "__main__":
    main()
