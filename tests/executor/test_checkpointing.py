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


class Wrap(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.inner(x)
        return out


def counting() -> fl.Graph:
    return fl.Flow(nn.Identity()).through(lambda x, h: (h + 1) * x).using("h").tag("h").build()


@pytest.mark.parametrize("reentrant", MODES)
@pytest.mark.parametrize("wrappers", [1, 2, 3])
def test_a_graph_checkpointed_through_wrapper_modules(reentrant: bool, wrappers: int) -> None:
    g = counting()
    module: nn.Module = g
    for _ in range(wrappers):
        module = Wrap(module)
    x = torch.ones(2, 1, requires_grad=True)
    checkpoint(module, x, use_reentrant=reentrant).sum().backward()
    assert x.grad is not None
    assert x.grad[0].item() == 1.0  # the first call's (h + 1) * x with h = 0
    assert g._plan.cells["h"].value[0].item() == 1.0  # advanced once


@pytest.mark.parametrize("reentrant", [pytest.param(False, id="non-reentrant")])
def test_a_stateful_body_checkpointed_inside_a_graph(reentrant: bool) -> None:
    w = nn.Parameter(torch.tensor(0.5, dtype=torch.float64))
    body = fl.Flow(nn.Identity()).through(lambda x, h: h + w * x).using("h").tag("h").build()

    class Checkpointed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = body

        def forward(self, x: Tensor) -> Tensor:
            out: Tensor = checkpoint(self.body, x, use_reentrant=reentrant)
            return out

    g = fl.Flow(nn.Identity()).loop(Checkpointed()).for_(2).build()
    plain = fl.Flow(nn.Identity()).loop(body).for_(2).build()
    x = torch.ones(2, 1, dtype=torch.float64, requires_grad=True)  # reentrant mode needs one
    g(x).sum().backward()
    got = w.grad.clone()  # type: ignore[union-attr]
    w.grad = None
    body.reset_state()
    plain(x).sum().backward()
    torch.testing.assert_close(got, w.grad)


def test_recomputation_leaves_the_last_calls_observation() -> None:
    g = (
        fl.Flow(linear64(3, 3))
        .tag("y")
        .through(lambda x, h: torch.tanh(x + h))
        .using("h")
        .tag("h")
        .build()
    )
    first, second = rand64(2, 3), rand64(2, 3)
    loss = checkpoint(g, first, use_reentrant=False).sum()
    loss = loss + checkpoint(g, second, use_reentrant=False).sum()
    last = g.tagged("y").detach().clone()
    loss.backward()
    torch.testing.assert_close(g.tagged("y").detach(), last, rtol=0, atol=0)


def test_a_second_backward_through_a_checkpointed_stateful_call_is_refused() -> None:
    g = counting()
    x = torch.ones(2, 1, requires_grad=True)
    out = checkpoint(g, x, use_reentrant=False).sum()
    out.backward(retain_graph=True)
    with pytest.raises(fl.GraphError, match="retain_graph=True"):
        out.backward()


def test_checkpointing_without_grad_records_nothing() -> None:
    g = counting()
    with torch.no_grad():
        for _ in range(5):
            checkpoint(g, torch.ones(2, 1), use_reentrant=False)
    assert g._guard is not None
    assert not g._guard.pending


def test_reentrant_checkpointing_refuses_state_that_carries_gradients() -> None:
    body = fl.Flow(nn.Identity()).through(lambda x, h: h + x).using("h").tag("h").build()

    class Checkpointed(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = body

        def forward(self, x: Tensor) -> Tensor:
            out: Tensor = checkpoint(self.body, x, use_reentrant=True)
            return out

    g = fl.Flow(nn.Identity()).loop(Checkpointed()).for_(2).build()
    with pytest.raises(fl.GraphError, match="use_reentrant=True runs its forward without grad"):
        g(torch.ones(2, 1, requires_grad=True))
    kept = counting()
    kept.backprop_state = True
    with pytest.raises(fl.GraphError, match="backprop_state = True"):
        checkpoint(kept, torch.ones(2, 1, requires_grad=True), use_reentrant=True)


def test_records_whose_backward_never_comes_are_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    from flowdl._executor import guard

    monkeypatch.setattr(guard, "MAX_PENDING", 3)
    g = counting()
    for _ in range(5):  # checkpointed forwards, no backward
        checkpoint(g, torch.ones(2, 1, requires_grad=True), use_reentrant=False)
    assert g._guard is not None
    assert g._guard.recorded == 3
    assert sum(len(v) for v in g._guard.pending.values()) == 3
