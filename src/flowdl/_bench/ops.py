"""go-torch's table of single operations, called directly and through a flowdl graph.

Matrix multiply, add, multiply and ReLU on ``n × n`` matrices (n = 128, 512, 1024),
``Linear(128, 10)`` and cross-entropy over 10 classes at batch 32, and
forward-backward of a 128-256-10 ReLU network at batch 32. Each graph is the
smallest flowdl formulation of the operation, so the difference between the two
columns is the cost of calling a graph.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

import flowdl as fl
from flowdl._bench.protocol import interleave, synchronize
from flowdl._bench.stats import Summary, paired_ratio

SIZES = (128, 512, 1024)


@dataclass(frozen=True)
class OpCase:
    """An operation and its flowdl formulation; both take ``args``."""

    name: str
    direct: Callable[..., Any]
    graph: Callable[..., Any]
    args: tuple[Tensor, ...]


@dataclass(frozen=True)
class OpResult:
    """Seconds per call, directly and through the graph, and their ratio."""

    name: str
    direct: Summary
    graph: Summary
    ratio: Summary


def _binary(fn: Callable[[Tensor, Tensor], Tensor]) -> fl.Graph:
    """``g(a, b) = fn(a, b)``: the second operand is a graph input read with ``using``."""
    return fl.Flow(fn).input("b").using("b").build()


def _forward_backward(net: nn.Module) -> Callable[[Tensor, Tensor], Tensor]:
    def step(x: Tensor, target: Tensor) -> Tensor:
        net.zero_grad(set_to_none=True)
        loss = nn.functional.cross_entropy(net(x), target)
        loss.backward()  # type: ignore[no-untyped-call]
        return loss.detach()

    return step


def op_cases(device: torch.device, sizes: tuple[int, ...] = SIZES) -> list[OpCase]:
    """go-torch's operations on `device`, with their graphs.

    Example:
        >>> [c.name for c in op_cases(torch.device("cpu"), sizes=(8,))]
        ['matmul 8', 'add 8', 'mul 8', 'relu 8', 'linear 32x128->10', 'cross_entropy 32x10',
         'mlp fwd+bwd 32x128-256-10']
    """
    cases = []
    for n in sizes:
        a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
        cases += [
            OpCase(f"matmul {n}", torch.matmul, _binary(torch.matmul), (a, b)),
            OpCase(f"add {n}", torch.add, _binary(torch.add), (a, b)),
            OpCase(f"mul {n}", torch.mul, _binary(torch.mul), (a, b)),
            OpCase(f"relu {n}", torch.relu, fl.Flow(torch.relu).build(), (a,)),
        ]
    linear = nn.Linear(128, 10).to(device)
    x = torch.randn(32, 128, device=device)
    logits, labels = torch.randn(32, 10, device=device), torch.randint(0, 10, (32,), device=device)
    layers = [nn.Linear(128, 256), nn.ReLU(), nn.Linear(256, 10)]
    net = nn.Sequential(*layers).to(device)
    graph = fl.Flow(layers[0]).through(layers[1]).through(layers[2]).build()
    cases += [
        OpCase("linear 32x128->10", linear, fl.Flow(linear).build(), (x,)),
        OpCase(
            "cross_entropy 32x10",
            nn.functional.cross_entropy,
            _binary(nn.functional.cross_entropy),
            (logits, labels),
        ),
        OpCase(
            "mlp fwd+bwd 32x128-256-10",
            _forward_backward(net),
            _forward_backward(graph),
            (x, labels),
        ),
    ]
    return cases


def _calls_for(case: OpCase, seconds: float, device: torch.device) -> int:
    """How many direct calls of the operation take about `seconds` (from the fastest of 5 tries)."""
    ten = _repeat(case.direct, case.args, 10)
    tries = []
    for _ in range(5):
        synchronize(device)
        start = time.perf_counter()
        ten()
        synchronize(device)
        tries.append((time.perf_counter() - start) / 10)
    return max(1, round(seconds / max(min(tries), 1e-9)))


def measure_ops(
    device: torch.device,
    rounds: int,
    seconds_per_block: float = 0.01,
    sizes: tuple[int, ...] = SIZES,
) -> list[OpResult]:
    """Time every case: blocks of about `seconds_per_block`, in interleaved rounds.

    Both sides are checked to give the same result first.

    Raises:
        AssertionError: a graph computes something else than its operation.

    Example:
        >>> results = measure_ops(torch.device("cpu"), rounds=1, seconds_per_block=1e-4, sizes=(8,))
        >>> [r.name for r in results][:2]
        ['matmul 8', 'add 8']
    """
    results = []
    for case in op_cases(device, sizes):
        torch.testing.assert_close(case.graph(*case.args), case.direct(*case.args))
        calls = _calls_for(case, seconds_per_block, device)
        times = interleave(
            {
                "direct": _repeat(case.direct, case.args, calls),
                "graph": _repeat(case.graph, case.args, calls),
            },
            rounds,
            1,
            device,
        )
        direct = [t / calls for t in times["direct"]]
        graph = [t / calls for t in times["graph"]]
        results.append(
            OpResult(case.name, Summary.of(direct), Summary.of(graph), paired_ratio(graph, direct))
        )
    return results


def _repeat(fn: Callable[..., Any], args: tuple[Tensor, ...], calls: int) -> Callable[[], None]:
    """``fn(*args)`` `calls` times."""

    def run() -> None:
        for _ in range(calls):
            fn(*args)

    return run
