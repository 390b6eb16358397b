"""`fl.TrendGroup` and `g.trends`: goDl's numbers (§4.2, §8.4) and group expansion (§8.5)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import flowdl as fl


def group(*histories: list[float]) -> fl.TrendGroup:
    return fl.TrendGroup({f"t{i}": fl.Trend(h) for i, h in enumerate(histories)})


def test_all_and_any_improving() -> None:
    falling = group([5, 4, 3], [3, 2, 1])
    assert falling.all_improving(3)
    mixed = group([5, 4, 3], [3, 2, 1], [1, 2, 3])
    assert not mixed.all_improving(3)
    assert mixed.any_improving(3)
    assert not group([1, 2, 3]).any_improving(3)


def test_all_and_any_stalled() -> None:
    assert group([1, 1, 1], [2, 2, 2]).all_stalled(3, 0.01)
    mixed = group([1, 1, 1], [1, 2, 3])
    assert not mixed.all_stalled(3, 0.01)
    assert mixed.any_stalled(3, 0.01)
    assert not group([1, 2, 3]).any_stalled(3, 0.01)


def test_all_and_any_converged() -> None:
    assert group([1, 1, 1], [2, 2, 2]).all_converged(3, 1e-8)
    mixed = group([1, 1, 1], [1, 5, 9])
    assert not mixed.all_converged(3, 1e-8)
    assert mixed.any_converged(3, 1e-8)


def test_mean_slope_and_slopes() -> None:
    g = group([0, 2, 4], [0, 1, 2])
    assert g.slopes(3) == [2.0, 1.0]
    assert g.mean_slope(3) == 1.5


def test_empty_group() -> None:
    empty = fl.TrendGroup({})
    assert len(empty) == 0
    assert not empty.all_improving(3)
    assert not empty.any_improving(3)
    assert not empty.all_stalled(3, 1.0)
    assert not empty.any_stalled(3, 1.0)
    assert not empty.all_converged(3, 1.0)
    assert not empty.any_converged(3, 1.0)
    assert empty.mean_slope(3) == 0.0
    assert empty.slopes(3) == []


def test_a_group_of_short_trends_is_never_true() -> None:
    short = group([1.0], [])
    assert not short.all_stalled(0, 1e9)
    assert not short.any_converged(0, 1e9)


def test_lookup_by_name() -> None:
    g = group([1, 2])
    assert g["t0"] == fl.Trend([1, 2])
    assert g.names == ("t0",)
    assert g.items() == [("t0", fl.Trend([1, 2]))]
    with pytest.raises(KeyError, match="no trend 'x' in this group; it has: t0"):
        g["x"]
    assert repr(g) == "TrendGroup({'t0': Trend([1.0, 2.0])})"


def heads(n: int = 2) -> fl.Graph:
    branches = [nn.Linear(3, 2) for _ in range(n)]
    return (
        fl.Flow(nn.Linear(3, 3))
        .tag("encoder")
        .split(*branches)
        .tag_group("head")
        .merge(fl.Add())
        .build()
    )


def test_trends_expands_a_tag_group() -> None:
    g = heads()
    for _ in range(5):
        g(torch.randn(4, 3))
        g.collect("head")
        g.flush()
    group = g.trends("head")
    assert group.names == ("head_0", "head_1")
    assert [len(t) for t in group] == [5, 5]


def test_trends_mixes_groups_and_tags_in_argument_order() -> None:
    g = heads()
    for _ in range(3):
        g(torch.randn(4, 3))
        g.collect("head", "encoder")
        g.flush()
    group = g.trends("encoder", "head")
    assert group.names == ("encoder", "head_0", "head_1")
    assert len(group) == 3
    assert group["head_1"].values == tuple(g.trend("head_1").values)


def test_trends_values_match_the_flushed_means() -> None:
    g = fl.Flow(nn.Identity()).split(lambda x: x, lambda x: -2 * x).tag_group("h").merge(fl.Add())
    graph = g.build()
    for x in (1.0, 2.0, 4.0):
        graph(torch.tensor([x, 3 * x]))
        graph.collect("h")
        graph.flush()
    group = graph.trends("h")
    assert group["h_0"].values == (2.0, 4.0, 8.0)
    assert group["h_1"].values == (-4.0, -8.0, -16.0)
    assert group.slopes() == [3.0, -6.0]


def test_trends_without_names_is_every_history_sorted() -> None:
    g = heads()
    g(torch.randn(4, 3))
    g.record("loss", 1.0)
    g.collect("head_1")
    g.flush()
    assert g.trends().names == ("head_1", "loss")


def test_trends_of_an_unknown_name_is_an_error() -> None:
    g = heads()
    with pytest.raises(KeyError, match="no 'hed' in Graph"):
        g.trends("hed")
