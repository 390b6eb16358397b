"""A per-sample halting loop with a stateful body: halted rows keep their state.

On every call, the first included (and after ``reset_state()``), a sample that
halts before the body runs keeps the body's state it had, the initial state on a
first call: running the batch equals running each sample alone.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

import flowdl as fl
from tests.support import linear64


class Cell(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = linear64(2, 2)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        return x + torch.tanh(self.w(x) + h) + 1.0


def halting_graph() -> fl.Graph:
    body = fl.Flow(Cell()).using("h").tag("h").build()
    return (
        fl.Flow(nn.Identity())
        .loop(body)
        .while_(lambda s: (s[:, 0] > 2.5).double(), max_iter=4)
        .tag("out")
        .build()
    )


def each_alone(g: fl.Graph, calls: list[Tensor]) -> list[Tensor]:
    """Every sample through its own copy of `g`, call after call: the rows of the oracle."""
    copies = [copy.deepcopy(g) for _ in range(calls[0].shape[0])]
    return [torch.cat([alone(x[i : i + 1]) for i, alone in enumerate(copies)]) for x in calls]


def test_a_sample_halting_before_the_first_iteration_keeps_its_initial_state() -> None:
    g = halting_graph()
    calls = [
        torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.5, 1.0]], dtype=torch.float64),
        torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]], dtype=torch.float64),
        torch.tensor([[1.0, 0.0], [0.0, 2.0], [9.0, 0.0]], dtype=torch.float64),
    ]
    want = each_alone(g, calls)
    for x, expected in zip(calls, want, strict=True):
        torch.testing.assert_close(g(x), expected, rtol=0, atol=1e-12)


def test_after_reset_state_the_halted_rows_keep_the_initial_state_again() -> None:
    g = halting_graph()
    warm = torch.tensor([[0.0, 0.0], [0.0, 0.0]], dtype=torch.float64)
    g(warm)
    g.reset_state()
    calls = [
        torch.tensor([[0.0, 1.0], [5.0, 0.0]], dtype=torch.float64),
        torch.tensor([[0.0, 0.0], [0.0, 0.0]], dtype=torch.float64),
    ]
    fresh = halting_graph()
    fresh.load_state_dict(g.state_dict())
    want = each_alone(fresh, calls)
    for x, expected in zip(calls, want, strict=True):
        torch.testing.assert_close(g(x), expected, rtol=0, atol=1e-12)


def test_nested_halting_loops_over_a_stateful_body_keep_the_initial_state() -> None:
    """One level deeper: the inner loop must not take the initial value the outer waits for."""
    cell = fl.Flow(Cell()).using("h").tag("h").build()
    inner = (
        fl.Flow(nn.Identity())
        .loop(cell)
        .while_(lambda s: (s[:, 1] > 2.0).double(), max_iter=2)
        .build()
    )
    g = (
        fl.Flow(nn.Identity())
        .loop(inner)
        .while_(lambda s: (s[:, 0] > 2.5).double(), max_iter=2)
        .build()
    )
    calls = [
        torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.5, 3.0]], dtype=torch.float64),
        torch.tensor([[0.0, 0.0], [0.0, 0.0], [0.0, 0.0]], dtype=torch.float64),
    ]
    want = each_alone(g, calls)
    for x, expected in zip(calls, want, strict=True):
        torch.testing.assert_close(g(x), expected, rtol=0, atol=1e-12)
