"""g.profile(runs=N): the median over the last N profiled forwards, with quartiles; the heat map."""

from __future__ import annotations

import statistics

import pytest
import torch
from torch import nn

import flowdl as fl
from flowdl._profile.median import median_profile
from flowdl._profile.profile import LevelTiming, NodeTiming, Profile


def synthetic(a: float, b: float, c: float) -> Profile:
    """Two levels: one node of `a` seconds, then two of `b` and `c`."""
    nodes = (
        NodeTiming("Linear_0", ("h",), a, 1, (2, 3)),
        NodeTiming("Tanh_0", (), b, 2),
        NodeTiming("ReLU_0", (), c, 2),
    )
    levels = (LevelTiming(1, a, a, 1), LevelTiming(2, b + c + 1.0, b + c, 2))
    return Profile(a + b + c + 1.0, levels, nodes)


def test_the_median_of_synthetic_profiles_by_hand() -> None:
    runs = [synthetic(1.0, 10.0, 5.0), synthetic(3.0, 20.0, 5.0), synthetic(2.0, 90.0, 7.0)]
    p = median_profile(runs)
    assert p.runs == 3
    assert [n.seconds for n in p.nodes] == [2.0, 20.0, 5.0]
    # inclusive quartiles of three values: halfway between the first and the median, ...
    assert [n.spread for n in p.nodes] == [(1.5, 2.5), (15.0, 55.0), (5.0, 6.0)]
    assert p.total_seconds == statistics.median([17.0, 29.0, 100.0])
    assert [lv.wall_seconds for lv in p.levels] == [2.0, 26.0]  # medians of 16, 26, 98
    assert [lv.node_seconds for lv in p.levels] == [2.0, 25.0]  # sums of the node medians
    assert p.nodes[0].output_shape == (2, 3)
    assert median_profile(runs[:1]) is runs[0]


def test_profiles_of_different_plans_are_refused() -> None:
    other = Profile(1.0, (LevelTiming(1, 1.0, 1.0, 1),), (NodeTiming("Cat_0", (), 1.0, 1),))
    with pytest.raises(ValueError, match="different nodes"):
        median_profile([synthetic(1.0, 1.0, 1.0), other])
    with pytest.raises(ValueError, match="at least one"):
        median_profile([])


def profiled_graph() -> fl.Graph:
    return fl.Flow(nn.Linear(3, 8)).through(nn.GELU()).tag("act").through(nn.Linear(8, 2)).build()


def test_profile_runs_is_the_median_of_the_last_forwards() -> None:
    g = profiled_graph()
    seen: list[Profile] = []
    g.on_profile(seen.append)
    g.enable_profiling()
    for _ in range(7):
        g(torch.randn(4, 3))
    assert g.profiled_runs == 7
    assert g.profile() is seen[-1]
    assert g.profile(runs=1) is seen[-1]
    p = g.profile(runs=5)
    assert p is not None
    assert p.runs == 5
    for k, node in enumerate(p.nodes):
        times = [q.nodes[k].seconds for q in seen[-5:]]
        assert node.seconds == statistics.median(times)
        assert node.spread is not None
        assert min(times) <= node.spread[0] <= node.seconds <= node.spread[1] <= max(times)
    assert p.total_seconds == statistics.median(q.total_seconds for q in seen[-5:])
    assert "median of 5 runs" in str(p)
    assert "quartiles" in str(p)
    assert "median of 5 runs" in repr(p)


@pytest.mark.parametrize("runs", [0, 101, 2.0, True])
def test_bad_runs_are_explained(runs: object) -> None:
    g = profiled_graph()
    with pytest.raises(ValueError, match="runs must be an int from 1 to 100"):
        g.profile(runs=runs)  # type: ignore[arg-type]


def test_more_runs_than_kept_is_explained() -> None:
    g = profiled_graph()
    assert g.profile(runs=3) is None  # nothing profiled yet
    g.enable_profiling()
    g(torch.randn(1, 3))
    g(torch.randn(1, 3))
    with pytest.raises(ValueError, match=r"only 2 profiled forwards are kept.*runs=2"):
        g.profile(runs=3)
    g.disable_profiling()
    assert g.profiled_runs == 0


def test_the_heat_map_draws_the_median_of_up_to_ten_runs() -> None:
    g = profiled_graph()
    g.enable_profiling()
    g(torch.randn(4, 3))
    assert "median of" not in g.dot(profile=True)  # one run: that run
    for _ in range(14):
        g(torch.randn(4, 3))
    drawn = g.dot(profile=True)
    assert "median of 10 runs" in drawn
    assert drawn == g.dot(profile=g.profile(runs=10))
