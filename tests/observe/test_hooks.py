"""on_flush, on_log and on_profile compose: handles, registration order, removal."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.hooks import RemovableHandle

import flowdl as fl


def tagged_graph() -> fl.Graph:
    return fl.Flow(nn.Identity()).tag("x").through(torch.sum).tag("total").build()


def test_a_second_on_flush_no_longer_replaces_the_first() -> None:
    g = tagged_graph()
    board: list[dict[str, float]] = []
    other: list[dict[str, float]] = []
    g.on_flush(board.append)
    g.on_flush(other.append)
    g.record("loss", 2.0, 4.0)
    g.flush()
    assert board == [{"loss": 3.0}]
    assert other == [{"loss": 3.0}]


def test_flush_hooks_run_in_registration_order_and_removal_leaves_the_others() -> None:
    g = tagged_graph()
    order: list[str] = []
    handles = [g.on_flush(lambda means, name=name: order.append(name)) for name in "abc"]
    assert all(isinstance(handle, RemovableHandle) for handle in handles)
    g.record("loss", 1.0)
    g.flush()
    assert order == ["a", "b", "c"]
    handles[1].remove()
    handles[1].remove()  # removing twice is harmless, as for torch's hooks
    order.clear()
    g.record("loss", 1.0)
    g.flush()
    assert order == ["a", "c"]


def test_a_handle_works_as_a_context_manager() -> None:
    g = tagged_graph()
    seen: list[dict[str, float]] = []
    with g.on_flush(seen.append):
        g.record("loss", 1.0)
        g.flush()
    g.record("loss", 2.0)
    g.flush()
    assert seen == [{"loss": 1.0}]


def test_log_hooks_compose_and_printing_resumes_when_none_is_left(
    capsys: pytest.CaptureFixture[str],
) -> None:
    g = tagged_graph()
    g(torch.tensor([1.0, 3.0]))
    first: list[dict[str, Any]] = []
    second: list[dict[str, Any]] = []
    h1 = g.on_log(first.append)
    h2 = g.on_log(second.append)
    g.log("total")
    assert [sorted(v) for v in first] == [["total"]]
    assert [v["total"].item() for v in second] == [4.0]
    assert capsys.readouterr().err == ""
    h1.remove()
    g.log("total")
    assert len(first) == 1
    assert len(second) == 2
    h2.remove()
    g.log("total")
    assert capsys.readouterr().err == "total: 4.0000\n"


def test_none_removes_every_hook() -> None:
    g = tagged_graph()
    seen: list[dict[str, float]] = []
    g.on_flush(seen.append)
    g.on_flush(seen.append)
    handle = g.on_flush(None)
    handle.remove()  # does nothing
    g.record("loss", 1.0)
    g.flush()
    assert seen == []


@pytest.mark.parametrize("register", ["on_flush", "on_log", "on_profile"])
def test_a_hook_that_is_not_callable_is_refused(register: str) -> None:
    g = tagged_graph()
    with pytest.raises(TypeError, match=rf"{register}\(\) takes a function"):
        getattr(g, register)(42)


def test_profile_hooks_compose_too() -> None:
    g = fl.Flow(nn.Linear(2, 2)).build()
    order: list[str] = []
    first = g.on_profile(lambda p: order.append("first"))
    g.on_profile(lambda p: order.append("second"))
    g.enable_profiling()
    g(torch.randn(1, 2))
    first.remove()
    g(torch.randn(1, 2))
    assert order == ["first", "second", "second"]
