"""Profiling constructs (timed as a whole), nested graphs and compiled graphs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import flowdl as fl
from flowdl._executor import fast


def constructs() -> fl.Graph:
    return (
        fl.Flow(nn.Linear(4, 4))
        .loop(nn.Linear(4, 4))
        .for_(3)
        .tag("for")
        .loop(nn.Tanh())
        .until(fl.ThresholdHalt(10.0), 4)
        .tag("until")
        .gate(fl.SoftmaxRouter(4, 2), nn.Linear(4, 4), nn.Tanh())
        .tag("gate")
        .gate(fl.TopKRouter(4, 3, 1), nn.Linear(4, 4), nn.Tanh(), nn.ReLU())
        .tag("topk")
        .switch(fl.ArgmaxSelector(4, 2), nn.Linear(4, 4), nn.Tanh())
        .tag("switch")
        .map(nn.Linear(4, 4))
        .each()
        .tag("map")
        .build()
    )


def test_constructs_are_timed_as_one_node_each() -> None:
    g = constructs()
    g.enable_profiling()
    g(torch.randn(5, 4))
    p = g.profile()
    assert p is not None
    assert [n.id for n in p.nodes] == [
        "Linear_0",
        "loop_0",
        "loop_1",
        "gate_0",
        "gate_1",
        "switch_0",
        "map_0",
    ]
    for tag in ("for", "until", "gate", "topk", "switch", "map"):
        assert g.timing(tag) > 0
    assert p.node("map_0").output_shape == (5, 4)


class FakeClock:
    """``time.perf_counter`` standing still except when a `Tick` node advances it."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class Tick(nn.Module):
    """Advances the fake clock by `seconds` per call: durations known exactly."""

    def __init__(self, clock: FakeClock, seconds: float) -> None:
        super().__init__()
        self.clock = clock
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.clock.now += self.seconds
        return x


def test_a_loop_is_timed_with_all_its_iterations(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr("time.perf_counter", clock)
    g = (
        fl.Flow(Tick(clock, 1.0))
        .loop(Tick(clock, 2.0))
        .for_(3)
        .tag("loop")
        .map(Tick(clock, 0.5))
        .each()
        .tag("map")
        .build()
    )
    g.enable_profiling()
    g(torch.ones(4, 1))
    p = g.profile()
    assert p is not None
    assert [(n.id, n.seconds) for n in p.nodes] == [
        ("Tick_0", 1.0),
        ("loop_0", 6.0),
        ("map_0", 2.0),
    ]
    assert p.total_seconds == 9.0
    assert [lv.wall_seconds for lv in p.levels] == [1.0, 6.0, 2.0]


def test_a_nested_graph_is_one_node_unless_it_is_profiled_itself() -> None:
    inner = fl.Flow(nn.Linear(4, 4)).through(nn.Tanh()).tag("t").label("inner").build()
    g = fl.Flow(nn.Identity()).through(inner).loop(inner).for_(2).build()
    g.enable_profiling()
    g(torch.randn(2, 4))
    p = g.profile()
    assert p is not None
    assert [n.id for n in p.nodes] == ["Identity_0", "inner", "loop_0"]
    assert inner.profile() is None  # profiling is per graph
    inner.enable_profiling()
    g(torch.randn(2, 4))
    inner_profile = inner.profile()
    assert inner_profile is not None  # its last call: the loop's second iteration
    assert [n.id for n in inner_profile.nodes] == ["Linear_0", "Tanh_0"]
    assert inner.timing("t") > 0


def test_a_compiled_graph_is_profiled_on_its_eager_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    g = (
        fl.Flow(nn.Linear(4, 4))
        .through(nn.Tanh())
        .tag("static")
        .switch(fl.FixedSelector(1), nn.Identity(), nn.ReLU())
        .through(nn.Linear(4, 2))
        .build()
    )
    x = torch.randn(3, 4)
    eager = g(x)
    g.compile(backend="eager")
    runs = []
    real = fast.Segment.__call__

    def counted(self: fast.Segment, vals: list[object]) -> None:
        runs.append(self.first)
        real(self, vals)

    monkeypatch.setattr(fast.Segment, "__call__", counted)
    torch.testing.assert_close(g(x), eager)
    assert runs  # compiled segments ran
    runs.clear()
    g.enable_profiling()
    torch.testing.assert_close(g(x), eager)
    assert runs == []  # no compiled segment ran: the eager plan did, node by node
    p = g.profile()
    assert p is not None
    assert [n.id for n in p.nodes] == ["Linear_0", "Tanh_0", "switch_0", "Linear_1"]
    assert g.compiled  # still compiled
    g.disable_profiling()
    g(x)
    assert runs  # compiled again once profiling is off
