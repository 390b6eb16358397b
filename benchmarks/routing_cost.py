"""What watching a gate's routing costs per forward (`g.routing`, `g.collect_routing`).

Three arms hold the same top-k gate (deep copies, checked to compute the same output):
the gate nobody asked about; the gate watched (``g.routing`` called once, so each
forward keeps a reference to the router's weights); the watched gate with
``collect_routing`` after every forward (a flush every ``--calls-per-round`` calls).
Forwards run under ``torch.no_grad()``; rounds alternate the arms in one process
(A B C, C B A, ...). The report gives the median (scaled MAD) of microseconds per
forward, the paired differences, and the time of the one check an unwatched gate's
forward makes (``timeit``): all that routing adds to a graph that never asks.

Run: ``python benchmarks/routing_cost.py [--dim 64] [--batch 256] [--experts 8] [--k 2]``
"""

from __future__ import annotations

import argparse
import copy
import platform
import timeit
from collections.abc import Callable

import torch
from torch import nn

import flowdl as fl
from flowdl._bench.protocol import interleave, repeated
from flowdl._bench.stats import Summary
from flowdl._control.gate import Gate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--calls-per-round", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    d = args.dim
    experts = [
        nn.Sequential(nn.Linear(d, d), nn.GELU(), nn.Linear(d, d)) for _ in range(args.experts)
    ]
    router = fl.TopKRouter(d, args.experts, k=args.k)
    base = fl.Flow(nn.Identity()).gate(router, *experts).tag("moe").build()
    plain, watched, collected = (copy.deepcopy(base) for _ in range(3))
    watched.routing("moe")
    collected.routing("moe")
    x = torch.randn(args.batch, d)
    with torch.no_grad():
        want = plain(x)
        for model in (watched, collected):
            torch.testing.assert_close(model(x), want, rtol=0, atol=0)

    def collect() -> None:
        collected(x)
        collected.collect_routing("moe")

    def round_of(step: Callable[[], object], flush: bool) -> Callable[[], None]:
        block = repeated(step, args.calls_per_round)

        def run() -> None:
            with torch.no_grad():
                block()
            if flush:
                collected.flush()

        return run

    arms = {
        "gate, routing never asked": round_of(lambda: plain(x), False),
        "gate, routing watched": round_of(lambda: watched(x), False),
        "gate, watched + collect_routing": round_of(collect, True),
    }
    times = interleave(arms, args.rounds, warmup=1, device=torch.device("cpu"))
    per_call = {name: [t / args.calls_per_round * 1e6 for t in ts] for name, ts in times.items()}

    print(
        f"# top-{args.k} gate of {args.experts} experts (Linear-GELU-Linear, D = {d}), "
        f"batch {args.batch}, forward under no_grad"
    )
    print(
        f"# torch {torch.__version__}, Python {platform.python_version()}, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s)"
    )
    print(f"# {args.rounds} interleaved rounds x {args.calls_per_round} calls; median (scaled MAD)")
    print("| arm | us per forward |")
    print("|---|---|")
    for name, values in per_call.items():
        s = Summary.of(values)
        print(f"| {name} | {s.median:.1f} ({s.spread:.1f}) |")
    names = list(per_call)
    print()
    print("| cost | us per forward, paired |")
    print("|---|---|")
    for label, a, b in (
        ("watching (watched - never asked)", names[1], names[0]),
        ("collect_routing (collected - watched)", names[2], names[1]),
    ):
        d_ = Summary.of([p - q for p, q in zip(per_call[a], per_call[b], strict=True)])
        print(f"| {label} | {d_.median:+.2f} ({d_.spread:.2f}) |")
    node = next(m for m in plain.modules() if isinstance(m, Gate))
    number = 200_000

    def best(statement: str) -> float:
        timer = timeit.Timer(statement, globals={"node": node})
        return min(timer.repeat(repeat=5, number=number)) / number

    check = best("node._routing is not None") - best("node")
    print()
    print(f"the check an unwatched gate's forward makes: {check * 1e9:.0f} ns per forward")


if __name__ == "__main__":
    main()
