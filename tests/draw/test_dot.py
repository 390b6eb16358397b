"""`g.dot()`: one DOT node per node of the record, a shape and colour per kind,
levels as clusters, stream, reference and state edges, escaping."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import flowdl as fl
from flowdl._draw.dot_text import escape
from flowdl._draw.styles import NODE_STYLES
from tests.draw.parsing import parse, unquote


def test_a_chain_is_drawn_without_running_it() -> None:
    calls = []

    class Spy(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            calls.append(1)
            return x

    g = fl.Flow(nn.Linear(2, 4)).through(Spy()).through(nn.ReLU()).build()
    dot = parse(g.dot())
    assert calls == []  # no forward pass
    assert set(dot.nodes) == {"input", "Linear_0", "Spy_0", "ReLU_0", "output"}
    assert [(e.tail, e.head) for e in dot.edges] == [
        ("input", "Linear_0"),
        ("Linear_0", "Spy_0"),
        ("Spy_0", "ReLU_0"),
        ("ReLU_0", "output"),
    ]
    assert dot.label("Linear_0") == "Linear_0\n12 params"
    assert dot.label("ReLU_0") == "ReLU_0"


def test_levels_are_clusters_holding_their_nodes() -> None:
    g = (
        fl.Flow(nn.Identity())
        .split(nn.Linear(3, 3), nn.Tanh(), nn.Dropout(0.5))
        .merge(fl.Add())
        .build()
    )
    dot = parse(g.dot())
    for index, ids in enumerate(g.levels):
        cluster = dot.clusters[f"cluster_level_{index}"]
        assert cluster.attributes["label"] == f"level {index}"
        assert cluster.attributes["style"] == "dashed"
        assert sorted(cluster.nodes) == sorted(ids)
    assert g.levels[2] == ("Linear_0", "Tanh_0", "Dropout_0")


@pytest.mark.parametrize(
    ("build", "node", "style"),
    [
        (lambda: fl.Flow(nn.Linear(2, 2)), "input", "input"),
        (lambda: fl.Flow(nn.Linear(2, 2)), "Linear_0", "module"),
        (lambda: fl.Flow(nn.GELU()), "GELU_0", "activation"),
        (lambda: fl.Flow(torch.relu), "relu_0", "activation"),
        (lambda: fl.Flow(nn.LayerNorm(2)), "LayerNorm_0", "normalization"),
        (lambda: fl.Flow(nn.BatchNorm1d(2)), "BatchNorm1d_0", "normalization"),
        (lambda: fl.Flow(nn.Dropout(0.1)), "Dropout_0", "dropout"),
        (lambda: fl.Flow(nn.Identity()).also(nn.Identity()), "add_0", "residual"),
        (
            lambda: fl.Flow(nn.Identity()).split(nn.Identity(), nn.Identity()).merge(fl.Mean()),
            "Mean_0",
            "merge",
        ),
        (
            lambda: fl.Flow(nn.Identity()).through(fl.StateAdd()).using("h").tag("h"),
            "state_h_0",
            "state",
        ),
        (lambda: fl.Flow(nn.Identity()).input("aux"), "input_aux", "input"),
        (
            lambda: fl.Flow(fl.Flow(nn.Linear(2, 2)).label("inner").build()),
            "inner",
            "input",  # the open nested graph's input carries the node's name
        ),
    ],
)
def test_each_kind_has_its_shape_and_colour(build, node: str, style: str) -> None:
    dot = parse(build().build().dot())
    expected = NODE_STYLES[style]
    assert dot.nodes[node]["shape"] == expected["shape"]
    assert dot.nodes[node]["fillcolor"] == expected["fillcolor"]


def test_output_node_follows_the_graph_output() -> None:
    g = fl.Flow(nn.Identity()).fork(nn.Tanh()).tag("side").through(nn.ReLU()).build()
    dot = parse(g.dot())
    assert dot.nodes["output"]["shape"] == "house"
    assert [e.tail for e in dot.edges if e.head == "output"] == ["ReLU_0"]
    # the fork's side branch is drawn, with its tag, and leads nowhere else
    assert dot.label("Tanh_0") == "Tanh_0\n#side"
    assert [e.tail for e in dot.edges if e.head == "Tanh_0"] == ["Identity_0"]


def test_output_node_name_avoids_a_node_called_output() -> None:
    inner = fl.Flow(nn.Tanh()).label("output").build()
    dot = parse(fl.Flow(inner).build().dot(depth=0))
    assert "output" in dot.nodes
    assert dot.nodes["output"]["shape"] == "folder"
    assert dot.nodes["output_"]["shape"] == "house"


def test_using_references_are_dashed_labelled_edges() -> None:
    g = (
        fl.Flow(nn.Identity())
        .tag("orig")
        .input("bias")
        .through(nn.Tanh())
        .through(lambda x, orig, bias: x + orig + bias)
        .using("orig", "bias")
        .build()
    )
    dot = parse(g.dot())
    (from_orig,) = dot.edges_between("Identity_0", "lambda_0")
    (from_bias,) = dot.edges_between("input_bias", "lambda_0")
    for edge, tag in ((from_orig, "orig"), (from_bias, "bias")):
        assert edge.attributes["style"] == "dashed"
        assert edge.label == tag
    (stream,) = dot.edges_between("Tanh_0", "lambda_0")
    assert "style" not in stream.attributes
    assert stream.label == ""
    assert "#orig" in dot.label("Identity_0")
    assert "#bias" in dot.label("input_bias")


def test_forward_references_are_dotted_state_edges() -> None:
    g = (
        fl.Flow(nn.Linear(3, 3))
        .through(fl.StateAdd())
        .using("memory")
        .tag("memory")
        .through(nn.Tanh())
        .build()
    )
    dot = parse(g.dot())
    (state,) = [e for e in dot.edges if e.label == "state:memory"]
    assert (state.tail, state.head) == ("StateAdd_0", "state_memory_0")
    assert state.attributes["style"] == "dotted"
    assert state.attributes["constraint"] == "false"
    (read,) = dot.edges_between("state_memory_0", "StateAdd_0")
    assert read.attributes["style"] == "dashed"
    assert read.label == "memory"
    assert dot.nodes["state_memory_0"]["shape"] == "diamond"


def test_map_over_draws_its_source_edge() -> None:
    g = (
        fl.Flow(nn.Linear(3, 3))
        .tag("rows")
        .through(nn.Tanh())
        .map(nn.Linear(3, 3))
        .over("rows")
        .build()
    )
    dot = parse(g.dot())
    assert dot.edges_between("Linear_0", "map_0")
    assert dot.label("map_0") == "over rows"
    assert not dot.edges_between("Tanh_0", "map_0")  # the stream is not the map's input


def test_graph_label_is_the_title() -> None:
    dot = parse(fl.Flow(nn.Identity()).label("tiny").build().dot())
    assert dot.attributes["label"] == "Graph 'tiny'"
    assert "label" not in parse(fl.Flow(nn.Identity()).build().dot()).attributes


def test_labels_and_names_are_escaped() -> None:
    class Weird(nn.Module):
        def extra_repr(self) -> str:
            return 'say "hi" \\N \\l'

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x

    tag = 'we"ird\\tag{<x>}'
    label = 'in"ner\\N'
    inner = fl.Flow(nn.Identity()).label(label).build()
    g = fl.Flow(Weird()).tag(tag).through(inner).build()
    text = g.dot()
    dot = parse(text)
    assert dot.label("Weird_0") == f"Weird_0\n#{tag}"
    assert dot.nodes["Weird_0"]["tooltip"] == 'Weird_0: Weird(say "hi" \\N \\l)'
    assert label in dot.nodes  # the nested graph's name, quotes and backslash intact
    assert f"{label}.Identity_0" in dot.nodes


@pytest.mark.parametrize(
    ("raw", "escaped"),
    [('a"b', 'a\\"b'), ("a\\b", "a\\\\b"), ("a\nb", "a\\nb"), ("a\r\nb", "a\\nb"), ("<b>", "<b>")],
)
def test_escape(raw: str, escaped: str) -> None:
    assert escape(raw) == escaped
    assert unquote(f'"{escaped}"') == raw.replace("\r\n", "\n")


def test_depth_must_be_a_count() -> None:
    g = fl.Flow(nn.Identity()).build()
    with pytest.raises(ValueError, match="depth= takes None"):
        g.dot(depth=-1)
    with pytest.raises(ValueError, match="received True"):
        g.dot(depth=True)  # type: ignore[arg-type]


def test_a_nested_graph_as_router_or_selector_is_a_cluster_of_its_own() -> None:
    # The router's cluster used to take the gate's name: Graphviz merged the two.
    router = fl.Flow(nn.Linear(4, 2)).through(nn.Softmax(-1)).label("router").build()
    selector = fl.Flow(nn.Linear(4, 2)).through(lambda w: w.argmax(-1)).label("pick").build()
    g = (
        fl.Flow(nn.Linear(4, 4))
        .gate(router, nn.Linear(4, 4), nn.Linear(4, 4))
        .switch(selector, nn.Identity(), nn.Tanh())
        .build()
    )
    clusters = [
        line.split('"')[1] for line in g.dot().splitlines() if line.strip().startswith("subgraph")
    ]
    assert len(clusters) == len(set(clusters)), clusters
    assert {"cluster_gate_0.router", "cluster_switch_0.selector"} <= set(clusters)
