"""Observation across the graph tree: dotted names, the recursive flush, internal names."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import flowdl as fl


def double() -> nn.Module:
    class Double(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return 2 * x

    return Double()


def tree() -> tuple[fl.Graph, fl.Graph, fl.Graph]:
    """model -> encoder (a labelled node) -> scan (a labelled loop body)."""
    scan = (
        fl.Flow(nn.Identity()).tag("state").through(double()).tag("_inside").label("scan").build()
    )
    encoder = (
        fl.Flow(nn.Identity())
        .tag("hidden")
        .loop(scan)
        .for_(2)
        .tag("looped")
        .label("encoder")
        .build()
    )
    model = fl.Flow(encoder).through(lambda x: x + 1).tag("out").build()
    return model, encoder, scan


def test_sub_graph_tags_are_read_after_the_outer_forward() -> None:
    model, encoder, scan = tree()
    model(torch.tensor([1.0]))
    assert model.subgraph("encoder") is encoder
    assert model.subgraph("encoder.scan") is scan
    assert model.tagged_at("encoder.hidden").item() == 1.0
    assert model.tagged_at("encoder.scan.state").item() == 2.0  # the last iteration's input
    assert model.tagged_at("out").item() == 5.0


def test_inner_and_outer_collect_into_their_own_graphs() -> None:
    model, encoder, _ = tree()
    for x in (1.0, 2.0, 3.0):
        model(torch.tensor([x]))
        model.collect("out")
        model.collect_at("encoder.hidden")
    assert model.collected("out") == [5.0, 9.0, 13.0]
    assert encoder.collected("hidden") == [1.0, 2.0, 3.0]
    assert model.collected("hidden") == []


def test_flush_recurses_and_names_are_dotted() -> None:
    model, encoder, scan = tree()
    model(torch.tensor([1.0]))
    model.collect("out")
    model.collect_at("encoder.hidden", "encoder.scan.state")
    scan.collect("_inside")
    model.record_at("encoder.aux", 0.5)
    flushed = model.flush()
    assert flushed == {
        "out": 5.0,
        "encoder.hidden": 1.0,
        "encoder.aux": 0.5,
        "encoder.scan.state": 2.0,
    }
    assert model.latest_metrics() == flushed
    assert encoder.latest_metrics() == {"hidden": 1.0, "aux": 0.5, "scan.state": 2.0}
    assert scan.latest_metrics() == {"state": 2.0, "_inside": 4.0}  # internal: seen at home only
    assert scan.trend("_inside").values == (4.0,)  # flushed with the rest
    assert model.trend_at("encoder.scan.state").values == (2.0,)
    assert encoder.trend("aux").values == (0.5,)
    assert (model.flush_count, encoder.flush_count, scan.flush_count) == (1, 1, 1)


def test_flush_counts_epochs_where_data_was() -> None:
    model, encoder, scan = tree()
    model.record("loss", 1.0)
    model.flush()
    assert (model.flush_count, encoder.flush_count, scan.flush_count) == (1, 0, 0)
    model.record_at("encoder.scan.x", 1.0)
    model.flush()
    assert (model.flush_count, encoder.flush_count, scan.flush_count) == (2, 1, 1)
    scan.record("x", 2.0)
    scan.flush()  # a flush of the child alone
    assert (model.flush_count, encoder.flush_count, scan.flush_count) == (2, 1, 2)
    assert model.trend_at("encoder.scan.x").values == (1.0, 2.0)


def test_flush_hooks_see_their_part_of_the_tree() -> None:
    model, encoder, scan = tree()
    seen: dict[str, list[dict[str, float]]] = {"model": [], "encoder": [], "scan": []}
    model.on_flush(seen["model"].append)
    encoder.on_flush(seen["encoder"].append)
    scan.on_flush(seen["scan"].append)
    model.record("loss", 3.0)
    scan.record("_secret", 7.0)
    model.flush()
    assert seen == {
        "model": [{"loss": 3.0}],
        "encoder": [],
        "scan": [{"_secret": 7.0}],
    }
    model.record_at("encoder.scan.x", 1.0)
    model.flush()
    assert seen["model"][-1] == {"encoder.scan.x": 1.0}
    assert seen["encoder"] == [{"scan.x": 1.0}]
    assert seen["scan"][-1] == {"x": 1.0}


def test_flush_of_named_paths_keeps_the_rest() -> None:
    model, encoder, _ = tree()
    model(torch.tensor([1.0]))
    model.collect("out")
    model.collect_at("encoder.hidden", "encoder.looped")
    assert model.flush("encoder.hidden") == {"encoder.hidden": 1.0}
    assert encoder.collected("looped") == [4.0]
    assert model.collected("out") == [5.0]
    assert model.flush("out", "encoder.nothing_buffered") == {"out": 5.0}
    with pytest.raises(KeyError, match="no nested graph 'decoder'"):
        model.flush("decoder.hidden")
    with pytest.raises(KeyError, match="'encoder' is a nested graph, not a metric"):
        model.flush("encoder")


def test_a_graph_nested_twice_is_flushed_once() -> None:
    shared = fl.Flow(nn.Identity()).tag("h").label("block").build()
    model = fl.Flow(shared).through(double()).through(shared).tag("out").build()
    model(torch.tensor([1.0]))
    model.collect_at("block.h")  # the value of the last call of the block: 2
    model.record_at("block.loss", 1.0)
    assert model.flush() == {"block.h": 2.0, "block.loss": 1.0}
    assert shared.trend("h").values == (2.0,)
    assert shared.flush_count == 1


def test_a_graph_reachable_through_two_labelled_paths_is_flushed_once() -> None:
    shared = fl.Flow(nn.Identity()).label("shared").build()
    left = fl.Flow(shared).label("left").build()
    right = fl.Flow(shared).label("right").build()
    model = fl.Flow(left).through(right).build()
    shared.record("x", 1.0)
    assert model.flush() == {"left.shared.x": 1.0}
    assert shared.trend("x").values == (1.0,)


def test_reset_trend_of_the_tree_and_of_paths() -> None:
    model, encoder, scan = tree()
    model.record("loss", 1.0)
    model.record_at("encoder.aux", 1.0)
    model.record_at("encoder.scan.x", 1.0)
    model.flush()
    model.reset_trend("encoder.aux")
    assert encoder.trend("aux").values == ()
    assert scan.trend("x").values == (1.0,)
    model.reset_trend()
    assert model.latest_metrics() == {}


def test_trends_across_the_tree() -> None:
    model, _, _ = tree()
    for x in (3.0, 2.0, 1.0):
        model(torch.tensor([x]))
        model.collect("out")
        model.collect_at("encoder.hidden")
        model.flush()
    group = model.trends("out", "encoder.hidden")
    assert group.names == ("out", "encoder.hidden")
    assert group.all_improving()
    assert group.slopes() == [-4.0, -1.0]
    assert model.trends().names == ("encoder.hidden", "out")


def test_tag_groups_of_nested_graphs_expand_in_exports(tmp_path: object) -> None:
    heads = (
        fl.Flow(nn.Identity())
        .split(nn.Identity(), double())
        .tag_group("head")
        .merge(fl.Add())
        .label("heads")
        .build()
    )
    model = fl.Flow(heads).build()
    model(torch.tensor(1.0))
    model.collect_at("heads.head")
    model.flush()
    assert model.trends("heads.head").names == ("heads.head_0", "heads.head_1")
    assert model._series(("heads.head",), "plot") == [
        ("heads.head_0", [1.0]),
        ("heads.head_1", [2.0]),
    ]


def test_at_methods_reject_what_they_cannot_use() -> None:
    model, _, _ = tree()
    with pytest.raises(KeyError, match="'scan' is a subgraph of Graph 'encoder'; expected a tag"):
        model.tagged_at("encoder.scan")
    with pytest.raises(KeyError, match="is internal to Graph 'scan'"):
        model.collect_at("encoder.scan._inside")
    with pytest.raises(KeyError, match="is internal to Graph 'scan'"):
        model.record_at("encoder.scan._new", 1.0)
    with pytest.raises(KeyError, match="expected a tag or a metric name"):
        model.record_at("encoder.scan", 1.0)
    with pytest.raises(ValueError, match="the label of a graph nested in this one"):
        model.record("encoder", 1.0)
    with pytest.raises(KeyError, match="no 'nothing' in Graph 'encoder'"):
        model.trend_at("encoder.nothing")
    model.record_at("encoder.aux", 1.0)
    assert model.trend_at("encoder.aux").values == ()  # known once recorded
    with pytest.raises(TypeError, match="needs at least one path"):
        model.collect_at()
