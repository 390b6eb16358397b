"""Dotted paths: what they name, and every way they can be wrong."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import flowdl as fl


def model() -> fl.Graph:
    scan = (
        fl.Flow(nn.Linear(4, 4))
        .tag("hidden")
        .through(nn.Tanh())
        .tag("_private")
        .label("scan")
        .build()
    )
    encoder = (
        fl.Flow(nn.Linear(4, 4))
        .tag("proj")
        .loop(scan)
        .for_(2)
        .split(nn.Linear(4, 4), nn.Linear(4, 4))
        .tag_group("head")
        .merge(fl.Add())
        .label("encoder")
        .build()
    )
    return fl.Flow(encoder).through(nn.Linear(4, 1)).tag("out").tag("_root_private").build()


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("encoder", fl.PathKind.SUBGRAPH),
        ("encoder.scan", fl.PathKind.SUBGRAPH),
        ("out", fl.PathKind.TAG),
        ("_root_private", fl.PathKind.TAG),  # internal names are reachable at home
        ("encoder.proj", fl.PathKind.TAG),
        ("encoder.head", fl.PathKind.TAG_GROUP),
        ("encoder.head_1", fl.PathKind.TAG),
        ("encoder.scan.hidden", fl.PathKind.TAG),
    ],
)
def test_validate_path(path: str, kind: fl.PathKind) -> None:
    assert model().validate_path(path) is kind


def test_metrics_are_paths_once_recorded() -> None:
    g = model()
    with pytest.raises(KeyError):
        g.validate_path("encoder.aux")
    g.record_at("encoder.aux", 1.0)
    assert g.validate_path("encoder.aux") is fl.PathKind.METRIC
    g.record("loss", 1.0)
    assert g.validate_path("loss") is fl.PathKind.METRIC
    with pytest.raises(KeyError, match="is a metric of Graph 'encoder', not a part of the model"):
        g.freeze("encoder.aux")


def test_an_unknown_segment_lists_what_exists_at_its_level() -> None:
    g = model()
    with pytest.raises(KeyError) as info:
        g.validate_path("decoder")
    message = str(info.value)
    assert message.startswith("g.validate_path(): no 'decoder' in Graph(3 nodes)")
    assert "path:   'decoder'" in message
    assert "exists: Graph(3 nodes) has nested graphs: encoder; tags: out, _root_private" in message
    with pytest.raises(KeyError) as info:
        g.validate_path("encoder.scan.hiden")
    assert "no 'hiden' in Graph 'scan'" in str(info.value)
    assert "exists: Graph 'scan' has tags: hidden\n" in str(info.value)  # _private is hidden
    with pytest.raises(KeyError) as info:
        g.validate_path("encoder.decoder.x")
    assert "no nested graph 'decoder' in Graph 'encoder'" in str(info.value)
    assert "has nested graphs: scan; tags: proj, head_0, head_1; tag groups: head" in str(
        info.value
    )
    assert "label the graph with .label(name)" in str(info.value)


def test_a_tag_cannot_be_walked_through() -> None:
    with pytest.raises(KeyError, match="'proj' is a tag of Graph 'encoder', not a nested graph"):
        model().validate_path("encoder.proj.x")
    with pytest.raises(KeyError, match="'head' is a tag group of Graph 'encoder', not a nested"):
        model().validate_path("encoder.head.x")


def test_internal_names_of_nested_graphs_are_not_reachable() -> None:
    g = model()
    with pytest.raises(KeyError, match="'_private' is internal to Graph 'scan'") as info:
        g.validate_path("encoder.scan._private")
    assert "g.subgraph('encoder.scan') gives that graph" in str(info.value)
    scan = g.subgraph("encoder.scan")
    assert scan.validate_path("_private") is fl.PathKind.TAG
    with pytest.raises(KeyError, match="no nested graph '_private'"):
        g.validate_path("encoder.scan._private.x")


@pytest.mark.parametrize(
    "path", ["", ".", "encoder.", ".encoder", "encoder..scan", "en coder", "a.\tb"]
)
def test_malformed_paths(path: str) -> None:
    with pytest.raises(ValueError, match="is not a path"):
        model().validate_path(path)


@pytest.mark.parametrize("path", [None, 3, ["encoder"]])
def test_paths_are_strings(path: Any) -> None:
    with pytest.raises(TypeError, match="takes a path as a string"):
        model().validate_path(path)


def test_subgraph() -> None:
    g = model()
    encoder = g.subgraph("encoder")
    assert encoder.label == "encoder"
    assert g.subgraph("encoder.scan") is encoder.subgraph("scan")
    with pytest.raises(KeyError, match="'out' is a tag of Graph\\(3 nodes\\), not a nested graph"):
        g.subgraph("out")
    with pytest.raises(KeyError, match="'head' is a tag group of Graph 'encoder'"):
        g.subgraph("encoder.head")


def test_every_path_method_reports_bad_paths() -> None:
    g = model()
    calls = {
        "g.validate_path()": g.validate_path,
        "g.subgraph()": g.subgraph,
        "g.parameters_at()": g.parameters_at,
        "g.named_parameters_at()": g.named_parameters_at,
        "g.named_buffers_at()": g.named_buffers_at,
        "g.freeze()": g.freeze,
        "g.thaw()": g.thaw,
        "g.is_frozen()": g.is_frozen,
        "g.set_training_at()": g.set_training_at,
        "g.tagged_at()": g.tagged_at,
        "g.trend_at()": g.trend_at,
        "g.collect_at()": g.collect_at,
        "g.flush()": g.flush,
        "g.trends()": g.trends,
        "g.reset_trend()": g.reset_trend,
    }
    for name, call in calls.items():
        with pytest.raises(KeyError) as info:
            call("encoder.nope.x")
        assert str(info.value).startswith(f"{name}: no nested graph 'nope'"), name
    with pytest.raises(KeyError, match=r"^g.record_at\(\): no nested graph 'nope'"):
        g.record_at("encoder.nope.x", 1.0)


def test_tagged_at_before_and_after_a_forward() -> None:
    g = model()
    assert g.tagged_at("encoder.scan.hidden") is None
    g(torch.randn(2, 4))
    assert g.tagged_at("encoder.scan.hidden").shape == (2, 4)
    assert torch.equal(g.tagged_at("out"), g.tagged("out"))


def test_a_tag_sharing_its_graph_label_is_read_as_the_tag() -> None:
    encoder = fl.Flow(nn.Identity()).tag("hidden").label("encoder").build()
    g = fl.Flow(encoder).tag("encoder").through(lambda x: 2 * x).build()
    g(torch.tensor([3.0]))
    assert g.validate_path("encoder") is fl.PathKind.SUBGRAPH  # structure: the graph
    assert g.subgraph("encoder") is encoder
    assert g.tagged_at("encoder").item() == 3.0  # values: the tag
    g.collect_at("encoder", "encoder.hidden")
    assert g.flush("encoder") == {"encoder": 3.0}
    assert g.flush() == {"encoder.hidden": 3.0}
    assert g.trend_at("encoder").values == (3.0,)
    assert g.latest_metrics() == {"encoder": 3.0, "encoder.hidden": 3.0}
