"""Under torch.profiler, every node runs inside record_function(<node path>)."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

import flowdl as fl
from flowdl._executor import steps


def model() -> fl.Graph:
    encoder = fl.Flow(nn.Linear(3, 4)).through(nn.Tanh()).label("encoder").build()
    return fl.Flow(encoder).through(nn.Linear(4, 2)).tag("out").build()


def traced_names(g: fl.Graph, x: torch.Tensor) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        g(x)
    return {event.name for event in prof.events()}


def test_the_node_paths_are_in_the_trace() -> None:
    g = model()
    names = traced_names(g, torch.randn(5, 3))
    assert {"encoder", "Linear_0", "encoder.Linear_0", "encoder.Tanh_0"} <= names


def test_flowdl_profiling_and_the_torch_profiler_together() -> None:
    g = model()
    g.enable_profiling()
    names = traced_names(g, torch.randn(5, 3))
    assert {"encoder", "Linear_0", "encoder.Linear_0"} <= names
    assert [node.id for node in g.profile().nodes] == ["encoder", "Linear_0"]


def test_recorded_runs_compute_the_same_outputs_and_gradients() -> None:
    torch.manual_seed(0)
    g = model().double()
    x = torch.randn(5, 3, dtype=torch.float64)
    plain = g(x)
    plain.sum().backward()
    grads = [p.grad.clone() for p in g.parameters()]  # type: ignore[union-attr]
    g.zero_grad()
    with profile(activities=[ProfilerActivity.CPU]):
        recorded = g(x)
        recorded.sum().backward()
    assert torch.equal(plain, recorded)
    for p, grad in zip(g.parameters(), grads, strict=True):
        assert torch.equal(p.grad, grad)  # type: ignore[arg-type]


def test_a_failing_node_is_still_named_under_the_profiler() -> None:
    g = fl.Flow(nn.Linear(3, 4)).through(nn.Linear(5, 2)).build()
    with profile(activities=[ProfilerActivity.CPU]), pytest.raises(fl.GraphError, match="Linear_1"):
        g(torch.randn(2, 3))


def test_without_a_profiler_the_plain_loop_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[object] = []
    monkeypatch.setattr(steps, "run_recorded", lambda *args: calls.append(args))
    g = model()
    g(torch.randn(2, 3))
    assert calls == []
    assert not steps.torch_profiler_active()
    with profile(activities=[ProfilerActivity.CPU]):
        assert steps.torch_profiler_active()
        g(torch.randn(2, 3))
    assert len(calls) == 1  # the outer graph only: the stub ran none of its steps
