"""`fl.Context`: cancellation and deadlines, checked between nodes and inside nested graphs."""

from __future__ import annotations

import threading
import time

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl
from tests.support import Counting


def chain(n: int, node: nn.Module) -> fl.Graph:
    flow = fl.Flow(node)
    for _ in range(n - 1):
        flow = flow.through(node)
    return flow.build()


def test_without_context_the_call_runs_to_the_end() -> None:
    counter = Counting()
    g = chain(5, counter)
    g(torch.ones(1), ctx=fl.Context())
    assert counter.calls == 5


def test_cancelled_before_the_call_runs_no_node() -> None:
    counter = Counting()
    g = chain(5, counter)
    ctx = fl.Context()
    ctx.cancel()
    with pytest.raises(fl.Cancelled, match=r"ctx.cancel\(\) was called"):
        g(torch.ones(1), ctx=ctx)
    assert counter.calls == 0
    assert ctx.cancelled


def test_cancel_from_another_thread_stops_between_nodes() -> None:
    started = threading.Event()
    ctx = fl.Context()
    calls = 0

    def slow(x: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        started.set()
        time.sleep(0.01)
        return x

    g = chain(1000, slow)  # type: ignore[arg-type]
    threading.Thread(target=lambda: (started.wait(), ctx.cancel())).start()
    with pytest.raises(fl.Cancelled):
        g(torch.ones(1), ctx=ctx)
    assert 1 <= calls < 1000


def test_deadline_exceeded_is_a_timeout_error() -> None:
    def slow(x: Tensor) -> Tensor:
        time.sleep(0.005)
        return x

    g = chain(10_000, slow)  # type: ignore[arg-type]
    with pytest.raises(fl.DeadlineExceeded) as info:
        g(torch.ones(1), ctx=fl.Context(timeout=0.05))
    assert isinstance(info.value, TimeoutError)
    assert isinstance(info.value, fl.Cancelled)
    assert "ran past its deadline" in str(info.value)


def test_absolute_deadline_in_the_past_stops_at_once() -> None:
    counter = Counting()
    g = chain(3, counter)
    with pytest.raises(fl.DeadlineExceeded):
        g(torch.ones(1), ctx=fl.Context(deadline=time.monotonic() - 1))
    assert counter.calls == 0


def test_the_earlier_of_timeout_and_deadline_wins() -> None:
    ctx = fl.Context(timeout=1000.0, deadline=time.monotonic() + 1.0)
    assert ctx.remaining is not None
    assert ctx.remaining <= 1.0
    assert fl.Context().remaining is None


def test_nested_graphs_see_the_callers_context() -> None:
    ctx = fl.Context()
    inner_after = Counting()

    def cancel_here(x: Tensor) -> Tensor:
        ctx.cancel()
        return x

    inner = fl.Flow(cancel_here).through(inner_after).build()  # type: ignore[arg-type]
    outer = fl.Flow(nn.Identity()).through(inner).through(nn.Identity()).build()
    with pytest.raises(fl.Cancelled):
        outer(torch.ones(1), ctx=ctx)
    assert inner_after.calls == 0  # stopped inside the nested graph, not after it


def test_graph_is_usable_after_a_cancelled_call() -> None:
    g = (
        fl.Flow(nn.Identity())
        .through(fl.StateAdd())
        .using("s")
        .tag("s")
        .through(nn.Identity())
        .build()
    )
    one = torch.ones(1)
    assert g(one).item() == 1.0
    ctx = fl.Context()
    ctx.cancel()
    with pytest.raises(fl.Cancelled):
        g(one, ctx=ctx)
    assert g(one).item() == 2.0  # state is that of the last completed call
    assert g(one, ctx=fl.Context(timeout=60)).item() == 3.0


def test_context_is_not_left_behind_after_a_call() -> None:
    ctx = fl.Context()
    g = fl.Flow(nn.Identity()).build()
    g(torch.ones(1), ctx=ctx)
    ctx.cancel()
    inner = fl.Flow(nn.Identity()).build()
    assert inner(torch.ones(1)).item() == 1.0  # the cancelled context does not leak


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"timeout": -1}, "must be >= 0 seconds"),
        ({"timeout": "5"}, "must be a number of seconds"),
        ({"deadline": "soon"}, "time.monotonic"),
    ],
)
def test_invalid_arguments(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        fl.Context(**kwargs)  # type: ignore[arg-type]


def test_repr() -> None:
    ctx = fl.Context(timeout=10)
    ctx.cancel()
    assert repr(ctx).startswith("Context(remaining=")
    assert repr(ctx).endswith("cancelled)")
