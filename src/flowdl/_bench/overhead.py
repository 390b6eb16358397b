"""The executor's own cost: a chain graph against the same `nn.Sequential`.

Three cases on an ``n``-node chain (Linear / ReLU alternating, or ``nn.Identity``
nodes that do no work): a training step, a forward without autograd, and the
Identity forward, whose difference divided by the node count is the executor's
overhead per node.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

import flowdl as fl
from flowdl._bench.protocol import interleave
from flowdl._bench.stats import Summary, paired_ratio


def chain_pair(width: int, n_nodes: int, identity: bool = False) -> tuple[nn.Sequential, fl.Graph]:
    """An `nn.Sequential` of `n_nodes` layers and a graph of deep copies of them.

    Layers alternate ``Linear(width, width)`` and ``ReLU``, or are all ``nn.Identity``.

    Example:
        >>> seq, g = chain_pair(4, 6)
        >>> x = torch.randn(2, 4)
        >>> torch.equal(seq(x), g(x)), len(g.levels) - 1
        (True, 6)
    """
    layers: list[nn.Module] = [
        nn.Identity() if identity else nn.Linear(width, width) if i % 2 == 0 else nn.ReLU()
        for i in range(n_nodes)
    ]
    first, *rest = copy.deepcopy(layers)
    flow = fl.Flow(first)
    for layer in rest:
        flow = flow.through(layer)
    return nn.Sequential(*layers), flow.build()


@dataclass(frozen=True)
class OverheadResult:
    """One case: seconds per call of each side, their ratio, the cost per node.

    Attributes:
        case: what was timed.
        nodes: the chain's length.
        sequential: seconds per call of the `nn.Sequential`.
        graph: seconds per call of the graph.
        ratio: graph ÷ sequential, round by round.
        per_node: (graph − sequential) ÷ nodes in seconds, round by round.
    """

    case: str
    nodes: int
    sequential: Summary
    graph: Summary
    ratio: Summary
    per_node: Summary


def measure_overhead(
    width: int = 64,
    batch: int = 32,
    nodes: int = 20,
    rounds: int = 30,
    calls_per_round: int = 50,
    device: torch.device | None = None,
) -> list[OverheadResult]:
    """Time the three cases in interleaved rounds of `calls_per_round` calls.

    Example:
        >>> [r.case for r in measure_overhead(width=4, batch=2, nodes=4, rounds=1,
        ...                                    calls_per_round=1)]
        ['train step', 'forward (no_grad)', 'Identity forward']
    """
    device = device or torch.device("cpu")
    sequential, graph = chain_pair(width, nodes)
    sequential.to(device)
    graph.to(device)
    x = torch.randn(batch, width, device=device)
    y = torch.randn(batch, width, device=device)
    torch.testing.assert_close(graph(x), sequential(x), rtol=0, atol=0)
    ident_seq, ident_graph = chain_pair(width, nodes, identity=True)

    def train(model: nn.Module) -> Callable[[], None]:
        opt = torch.optim.SGD(model.parameters(), lr=1e-3)

        def run() -> None:
            for _ in range(calls_per_round):
                loss = nn.functional.mse_loss(model(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()  # type: ignore[no-untyped-call]
                opt.step()

        return run

    def forward(model: nn.Module) -> Callable[[], None]:
        def run() -> None:
            with torch.no_grad():
                for _ in range(calls_per_round):
                    model(x)

        return run

    cases = {
        "train step": (train(sequential), train(graph)),
        "forward (no_grad)": (forward(sequential), forward(graph)),
        "Identity forward": (forward(ident_seq), forward(ident_graph)),
    }
    results = []
    for case, (seq_run, graph_run) in cases.items():
        times = interleave({"seq": seq_run, "graph": graph_run}, rounds, warmup=1, device=device)
        seq_t = [t / calls_per_round for t in times["seq"]]
        graph_t = [t / calls_per_round for t in times["graph"]]
        results.append(
            OverheadResult(
                case,
                nodes,
                Summary.of(seq_t),
                Summary.of(graph_t),
                paired_ratio(graph_t, seq_t),
                Summary.of([(g - s) / nodes for g, s in zip(graph_t, seq_t, strict=True)]),
            )
        )
    return results
