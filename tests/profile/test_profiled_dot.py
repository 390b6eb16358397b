"""`g.dot(profile=True)`: node times as a heat map, level times and parallelism, the total."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import flowdl as fl
from flowdl._draw.styles import heat
from tests.draw.parsing import parse
from tests.profile.test_constructs import FakeClock, Tick


def profiled(monkeypatch: pytest.MonkeyPatch) -> fl.Graph:
    """Node times fixed by a fake clock: Tick_0 1 s, the split 2 s and 4 s, the gate 1.5 s."""
    clock = FakeClock()
    monkeypatch.setattr("time.perf_counter", clock)
    g = (
        fl.Flow(Tick(clock, 1.0))
        .split(Tick(clock, 2.0), Tick(clock, 4.0))
        .merge(fl.Add())
        .gate(fl.SoftmaxRouter(2, 2), Tick(clock, 1.5), nn.Identity())
        .build()
    )
    g.enable_profiling()
    g(torch.ones(3, 2))
    return g


def test_no_profile_is_an_error() -> None:
    g = fl.Flow(nn.Identity()).build()
    with pytest.raises(fl.GraphError, match="there is no profile to draw") as caught:
        g.dot(profile=True)
    assert "g.enable_profiling()" in str(caught.value)
    g.enable_profiling()
    with pytest.raises(fl.GraphError, match="no profile"):
        g.dot(profile=True)  # enabled, but no forward yet


def test_heat_colours_and_times(monkeypatch: pytest.MonkeyPatch) -> None:
    g = profiled(monkeypatch)
    dot = parse(g.dot(profile=True))
    assert dot.attributes["label"] == "Forward: 8.5s"
    assert dot.nodes["Tick_2"]["fillcolor"] == heat(1.0) == "#e74c3c"  # the slowest
    assert dot.nodes["Tick_1"]["fillcolor"] == heat(0.5)
    assert dot.nodes["Tick_0"]["fillcolor"] == heat(0.25)
    assert dot.nodes["Add_0"]["fillcolor"] == heat(0.0) == "#27ae60"
    assert dot.label("Tick_1").split("\n")[-1] == "2.0s"
    assert dot.label("Tick_0").split("\n")[-1] == "1.0s"
    levels = {c: dot.clusters[f"cluster_level_{c}"].attributes["label"] for c in range(5)}
    assert levels == {
        0: "level 0",
        1: "level 1  1.0s",
        2: "level 2  6.0s  ×1.00",
        3: "level 3  0µs",
        4: "level 4  1.5s",
    }
    gate = dot.clusters["cluster_gate_0"].attributes
    assert gate["label"].split("\n")[-1] == "1.5s"
    assert gate["color"] == heat(1.5 / 4.0)
    assert gate["penwidth"] == "3"
    # inside a construct, parts keep their colours: the construct is timed as a whole
    assert dot.nodes["gate_0.expert_0"]["fillcolor"] == "#eaecee"


def test_a_given_profile_is_drawn(monkeypatch: pytest.MonkeyPatch) -> None:
    g = profiled(monkeypatch)
    profile = g.profile()
    assert profile is not None
    assert g.dot(profile=profile) == g.dot(profile=True)
    other = fl.Flow(nn.Tanh()).build()
    with pytest.raises(fl.GraphError, match="not a profile of this graph") as caught:
        other.dot(profile=profile)
    assert "Tick_0" in str(caught.value)
    with pytest.raises(TypeError, match=r"profile= takes True, False or a fl\.Profile"):
        g.dot(profile="yes")  # type: ignore[arg-type]


def test_without_profile_the_drawing_is_unchanged(monkeypatch: pytest.MonkeyPatch) -> None:
    g = profiled(monkeypatch)
    assert g.dot() == g.dot(profile=False)
    assert "Forward:" not in g.dot()


def test_a_real_profile_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    g = (
        fl.Flow(nn.Linear(4, 4))
        .split(nn.Linear(4, 4), nn.Tanh(), nn.ReLU())
        .merge(fl.Mean())
        .loop(nn.Linear(4, 4))
        .for_(2)
        .build()
    )
    g.enable_profiling()
    g(torch.randn(2, 4))
    text = g.dot(profile=True)
    dot = parse(text)
    assert dot.attributes["label"].startswith("Forward: ")
    assert "×" in dot.clusters["cluster_level_2"].attributes["label"]
    assert "µs" in text or "ms" in text
    assert dot.nodes["Linear_0"]["fillcolor"].startswith("#")


@pytest.mark.parametrize(
    ("ratio", "colour"), [(-1.0, "#27ae60"), (0.25, "#8da539"), (2.0, "#e74c3c")]
)
def test_heat(ratio: float, colour: str) -> None:
    assert heat(ratio) == colour
