"""Activation checkpointing (`torch.utils.checkpoint`) of graphs, and inside graphs.

Both modes work on any graph; a graph with state advances it once per step (the
recomputation during backward reads the state the forward read and writes
none), and gradients equal those of the graph run without checkpointing.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

import flowdl as fl
from tests.support import linear64, rand64


class Cell(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = linear64(3, 3)
        self.u = linear64(3, 3)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        return torch.tanh(self.w(x) + self.u(h))


def stateless() -> fl.Graph:
    return (
        fl.Flow(linear64(3, 3))
        .through(nn.Tanh())
        .loop(linear64(3, 3))
        .for_(2)
        .gate(fl.SoftmaxRouter(3, 2).double(), linear64(3, 3), nn.Identity())
        .build()
    )


def recurrent() -> fl.Graph:
    return fl.Flow(Cell()).using("h").tag("h").through(linear64(3, 3)).build()


def nested_recurrent() -> fl.Graph:
    body = fl.Flow(Cell()).using("h").tag("h").build()
    return fl.Flow(linear64(3, 3)).loop(body).for_(3).through(linear64(3, 1)).build()


MODES = [pytest.param(False, id="non-reentrant"), pytest.param(True, id="reentrant")]


@pytest.mark.parametrize("reentrant", MODES)
@pytest.mark.parametrize("build", [stateless, recurrent, nested_recurrent])
def test_checkpointed_steps_equal_plain_steps(reentrant: bool, build: object) -> None:
    g = build()  # type: ignore[operator]
    plain = copy.deepcopy(g)
    for step in range(3):
        x = rand64(4, 3)
        out = checkpoint(g, x, use_reentrant=reentrant)
        want = plain(x)
        torch.testing.assert_close(out, want, rtol=0, atol=1e-12)
        out.sum().backward()
        want.sum().backward()
        for (name, p), q in zip(g.named_parameters(), plain.parameters(), strict=True):
            assert p.grad is not None, name
            torch.testing.assert_close(
                p.grad, q.grad, rtol=0, atol=1e-12, msg=f"step {step}: {name}"
            )


@pytest.mark.parametrize("reentrant", MODES)
def test_the_state_advances_once_per_checkpointed_step(reentrant: bool) -> None:
    class Count(nn.Module):
        def forward(self, x: Tensor, n: Tensor) -> Tensor:
            return n + 1 + 0 * x

    g = fl.Flow(Count()).using("n").tag("n").build()
    x = torch.zeros(1, requires_grad=True)
    for _ in range(3):
        checkpoint(g, x, use_reentrant=reentrant).sum().backward()
    with torch.no_grad():
        assert g(x).item() == 4.0  # three steps, then this call


@pytest.mark.parametrize("reentrant", MODES)
def test_checkpointing_a_node_inside_a_graph(reentrant: bool) -> None:
    inner = nn.Sequential(linear64(3, 3), nn.Tanh(), linear64(3, 3))

    class Checkpointed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, x: Tensor) -> Tensor:
            out: Tensor = checkpoint(self.inner, x, use_reentrant=reentrant)
            return out

    first = linear64(3, 3)
    g = fl.Flow(first).through(Checkpointed()).build()
    plain = fl.Flow(first).through(inner).build()
    params = list(plain.parameters())
    x = rand64(2, 3)
    g(x).sum().backward()  # reentrant checkpointing supports .backward(), not .grad()
    got = [x.grad, *(p.grad for p in params)]
    for p in params:
        p.grad = None
    y = x.detach().requires_grad_()
    plain(y).sum().backward()
    want = [y.grad, *(p.grad for p in params)]
    for a, b in zip(got, want, strict=True):
        assert a is not None
        assert b is not None
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
