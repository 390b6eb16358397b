"""A value read after a call is from that call, or absent (``None``): never older.

Nested graphs that did not run in a call (a switch branch not taken, a sparse
expert without samples) report nothing; ``collect`` records nothing stale; fast
mode and eager report the same tags.
"""

from __future__ import annotations

import contextlib
import copy

import torch
from torch import nn

import flowdl as fl


def branch(scale: float) -> fl.Graph:
    return fl.Flow(nn.Identity()).through(lambda x: x * scale).tag("y").build()


def switched() -> tuple[fl.Graph, fl.Graph, fl.Graph]:
    a, b = branch(2.0), branch(3.0)
    g = (
        fl.Flow(nn.Identity())
        .switch(lambda x: int(x.sum() > 0), a, b)
        .label("router")
        .tag("out")
        .build()
    )
    return g, a, b


def test_a_switch_branch_not_taken_reports_nothing() -> None:
    g, a, b = switched()
    g(torch.ones(2, 1))  # branch 1
    assert b.tagged("y") is not None
    g(-torch.ones(2, 1))  # branch 0
    torch.testing.assert_close(a.tagged("y"), -2 * torch.ones(2, 1))
    assert b.tagged("y") is None  # was the first call's value


def test_collect_records_no_stale_value_of_a_branch_not_taken() -> None:
    g, _, b = switched()
    g(torch.ones(2, 1))
    b.collect("y")
    g(-torch.ones(2, 1))
    b.collect("y")
    assert b.collected("y") == [3.0]  # only the call that ran it


def test_tagged_at_a_path_of_a_branch_not_taken_is_none() -> None:
    a = fl.Flow(nn.Identity()).through(lambda x: x * 2).tag("y").label("a").build()
    b = fl.Flow(nn.Identity()).through(lambda x: x * 3).tag("y").label("b").build()
    g = fl.Flow(nn.Identity()).switch(lambda x: int(x.sum() > 0), a, b).build()
    g(torch.ones(2, 1))
    torch.testing.assert_close(g.tagged_at("b.y"), 3 * torch.ones(2, 1))
    g(-torch.ones(2, 1))
    assert g.tagged_at("b.y") is None
    torch.testing.assert_close(g.tagged_at("a.y"), -2 * torch.ones(2, 1))
    g.collect_at("b.y")
    assert b.collected("y") == []


def test_a_sparse_expert_without_samples_reports_nothing() -> None:
    experts = [branch(1.0), branch(5.0)]

    class Pick(nn.Module):
        sparse = True

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            first = (x[:, :1] > 0).to(x.dtype)
            return torch.cat([first, 1 - first], dim=1)

    g = fl.Flow(nn.Identity()).gate(Pick(), *experts).build()
    g(torch.tensor([[1.0], [-1.0]]))
    assert experts[0].tagged("y") is not None
    assert experts[1].tagged("y") is not None
    g(torch.tensor([[1.0], [2.0]]))  # nobody chooses expert 1
    torch.testing.assert_close(experts[0].tagged("y"), torch.tensor([[1.0], [2.0]]))
    assert experts[1].tagged("y") is None


def test_a_failed_loop_reports_no_iterations_of_an_older_call() -> None:
    def body(s: torch.Tensor) -> torch.Tensor:
        if s.abs().sum() > 100:
            raise ValueError("too big")
        return s * 2

    g = fl.Flow(nn.Identity()).tag("in").loop(body).for_(2).tag("loop").build()
    g(torch.ones(1, 1))
    assert g.iterations("loop") is not None
    with contextlib.suppress(fl.GraphError):
        g(torch.full((1, 1), 1000.0))
    assert g.iterations("loop") is None
    assert g.tagged("in") is not None


def test_fast_mode_and_eager_report_the_same_nested_tags() -> None:
    inner = fl.Flow(nn.Linear(3, 3)).tag("hidden").through(nn.Tanh()).build()
    g = fl.Flow(nn.Linear(3, 3)).through(inner).through(nn.Linear(3, 1)).build()
    eager = copy.deepcopy(g)
    eager_inner = next(m for m in eager.modules() if m is not eager and isinstance(m, fl.Graph))
    g.compile(backend="eager")
    for _ in range(2):
        x = torch.randn(4, 3)
        g(x)
        eager(x)
        torch.testing.assert_close(inner.tagged("hidden"), eager_inner.tagged("hidden"))
