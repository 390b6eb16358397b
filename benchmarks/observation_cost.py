"""What observation costs per forward: a tagged graph nobody observes, against the same
graph untagged and the same `nn.Sequential`; and, for scale, what collecting costs.

Four arms hold the same layers (``Linear(width, width)`` and ``ReLU``, alternating,
or ``nn.Identity`` with ``--identity`` to see the executor's own cost; deep copies,
checked to compute the same output): ``nn.Sequential``; the graph
without tags; the graph with a tag after every layer and observation never used;
the tagged graph calling ``collect`` on every tag and ``record`` on the output mean
after each forward (a flush every ``--calls-per-round`` calls). Forwards run under
``torch.no_grad()``. Rounds alternate the arms (A B C D, D C B A, ...) in one
process; the report gives the median (scaled MAD) and the minimum of microseconds per
forward, the paired, round-by-round differences that isolate each cost, and the time
of the one attribute check a forward makes for observation (``timeit``).

Run: ``python benchmarks/observation_cost.py [--width 64] [--batch 32] [--layers 8]
[--identity]``
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


def layers(width: int, n: int, identity: bool) -> list[nn.Module]:
    """``n`` layers: ``Linear(width, width)`` and ``ReLU``, alternating, or ``nn.Identity``."""
    if identity:
        return [nn.Identity() for _ in range(n)]
    return [nn.Linear(width, width) if i % 2 == 0 else nn.ReLU() for i in range(n)]


def graph(modules: list[nn.Module], tagged: bool) -> fl.Graph:
    """A chain graph of deep copies of `modules`, with a tag after each one if `tagged`."""
    first, *rest = copy.deepcopy(modules)
    flow = fl.Flow(first)
    if tagged:
        flow = flow.tag("layer_0")
    for i, module in enumerate(rest, start=1):
        flow = flow.through(module)
        if tagged:
            flow = flow.tag(f"layer_{i}")
    return flow.build()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls-per-round", type=int, default=200)
    parser.add_argument("--identity", action="store_true", help="nn.Identity layers")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)

    modules = layers(args.width, args.layers, args.identity)
    sequential = nn.Sequential(*modules)
    plain = graph(modules, tagged=False)
    tagged = graph(modules, tagged=True)
    observed = graph(modules, tagged=True)
    x = torch.randn(args.batch, args.width)
    with torch.no_grad():
        want = sequential(x)
        for model in (plain, tagged, observed):
            torch.testing.assert_close(model(x), want, rtol=0, atol=0)
    tags = observed.tags

    def forward(model: nn.Module) -> Callable[[], object]:
        return lambda: model(x)

    def observe() -> None:
        out = observed(x)
        observed.collect(*tags)
        observed.record("output", out.mean())

    def round_of(step: Callable[[], object], flush: bool) -> Callable[[], None]:
        block = repeated(step, args.calls_per_round)

        def run() -> None:
            with torch.no_grad():
                block()
            if flush:
                observed.flush()

        return run

    arms = {
        "nn.Sequential": round_of(forward(sequential), False),
        "graph, no tags": round_of(forward(plain), False),
        f"graph, {len(tags)} tags, unobserved": round_of(forward(tagged), False),
        f"graph, {len(tags)} tags, collect + record": round_of(observe, True),
    }
    times = interleave(arms, args.rounds, warmup=1, device=torch.device("cpu"))
    per_call = {name: [t / args.calls_per_round * 1e6 for t in ts] for name, ts in times.items()}

    kind = "nn.Identity" if args.identity else f"Linear({args.width}, {args.width}) / ReLU"
    print(f"# {args.layers} layers ({kind}), batch {args.batch}, forward under no_grad")
    print(
        f"# torch {torch.__version__}, Python {platform.python_version()}, "
        f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s)"
    )
    print(f"# {args.rounds} interleaved rounds x {args.calls_per_round} calls; median (scaled MAD)")
    print("| arm | us per forward | minimum |")
    print("|---|---|---|")
    for name, values in per_call.items():
        s = Summary.of(values)
        print(f"| {name} | {s.median:.2f} ({s.spread:.2f}) | {min(values):.2f} |")
    names = list(per_call)

    def difference(a: str, b: str) -> Summary:
        return Summary.of([p - q for p, q in zip(per_call[a], per_call[b], strict=True)])

    print()
    print("| cost | us per forward, paired |")
    print("|---|---|")
    rows = [
        ("executor (graph, no tags - nn.Sequential)", names[1], names[0]),
        ("tags, unobserved (tagged - untagged graph)", names[2], names[1]),
        ("collect + record (observed - tagged graph)", names[3], names[2]),
    ]
    for label, a, b in rows:
        d = difference(a, b)
        print(f"| {label} | {d.median:+.2f} ({d.spread:.2f}) |")
    # The check Graph.forward makes to note its first call (the observation clock starts
    # there; it stops at the first operand once the graph has run), net of timeit's loop
    # and of loading `g`.
    names = {"g": tagged, "is_compiling": torch.compiler.is_compiling}
    number = 100_000

    def best(statement: str) -> float:
        timer = timeit.Timer(statement, globals=names)
        return min(timer.repeat(repeat=5, number=number)) / number

    check = best("g._first_call is None and not is_compiling()") - best("g")
    print()
    print(f"observation's attribute check in Graph.forward: {check * 1e9:.0f} ns per forward")


if __name__ == "__main__":
    main()
