"""Loops drawn once with their count, every gate expert and switch branch, maps with
their mode, nested graphs as clusters down to a depth."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import flowdl as fl
from tests.draw.counting import cluster_total, leaf_counts
from tests.draw.parsing import parse


@pytest.mark.parametrize(
    ("finish", "head", "repeat"),
    [
        (lambda b: b.for_(3), "×3", "×3"),
        (lambda b: b.while_(fl.ThresholdHalt(1.0), 5), "while ≤ 5", "≤ 5"),
        (lambda b: b.until(fl.ThresholdHalt(1.0), 7), "until ≤ 7", "≤ 7"),
    ],
)
def test_a_loop_is_drawn_once_with_its_count(finish, head: str, repeat: str) -> None:
    g = finish(fl.Flow(nn.Identity()).loop(nn.Linear(4, 4))).tag("out").build()
    dot = parse(g.dot())
    cluster = dot.clusters["cluster_loop_0"]
    assert cluster.attributes["label"] == f"loop_0: loop {head}\nΣ 20 params\n#out"
    assert dot.label("loop_0") == head
    assert dot.nodes["loop_0"]["shape"] == "box3d"
    assert dot.label("loop_0.body") == "body: Linear\n20 params"  # once, not per iteration
    (back,) = dot.edges_between("loop_0.body", "loop_0")
    assert back.label == repeat
    assert dot.edges_between("loop_0", "loop_0.body")
    halting = "loop_0.cond" in dot.nodes
    assert halting == (head != "×3")
    if halting:
        assert dot.label("loop_0.cond") == "halt: ThresholdHalt"
        (halt,) = dot.edges_between("loop_0", "loop_0.cond")
        assert halt.label == ("before each" if head.startswith("while") else "after each")
    assert [e.tail for e in dot.edges if e.head == "output"] == ["loop_0"]


def test_references_of_a_loop_go_to_its_body() -> None:
    g = fl.Flow(nn.Identity()).tag("x0").loop(lambda h, x0: h + x0).for_(2).using("x0").build()
    dot = parse(g.dot())
    (ref,) = [e for e in dot.edges if e.label == "x0"]
    assert (ref.tail, ref.head) == ("Identity_0", "loop_0.body")


def test_every_gate_expert_is_drawn() -> None:
    experts = [nn.Linear(4, 4), nn.Tanh(), nn.Identity()]
    g = (
        fl.Flow(nn.Identity())
        .tag("ctx")
        .gate(fl.SoftmaxRouter(4, 3), *experts)
        .using("ctx")
        .build()
    )
    dot = parse(g.dot())
    cluster = dot.clusters["cluster_gate_0"]
    assert cluster.attributes["label"] == "gate_0: gate (3 experts)\nΣ 35 params"
    assert sorted(cluster.nodes) == [
        "gate_0",
        "gate_0.expert_0",
        "gate_0.expert_1",
        "gate_0.expert_2",
        "gate_0.out",
    ]
    assert dot.label("gate_0") == "router: SoftmaxRouter\n15 params"
    assert [dot.label(f"gate_0.expert_{i}") for i in range(3)] == [
        "[0] Linear\n20 params",
        "[1] Tanh",
        "[2] Identity",
    ]
    for i in range(3):
        (route,) = dot.edges_between("gate_0", f"gate_0.expert_{i}")
        assert route.label == f"w[{i}]"
        assert route.attributes["style"] == "dashed"
        assert dot.edges_between(f"gate_0.expert_{i}", "gate_0.out")
    (ref,) = [e for e in dot.edges if e.label == "ctx"]
    assert ref.head == "gate_0"  # references feed the router
    assert dot.edges_between("gate_0.out", "output")


def test_a_sparse_gate_says_top_k() -> None:
    g = fl.Flow(nn.Identity()).gate(fl.TopKRouter(4, 3, 2), *(nn.Linear(4, 4) for _ in range(3)))
    dot = parse(g.build().dot())
    assert (
        dot.clusters["cluster_gate_0"]
        .attributes["label"]
        .startswith("gate_0: gate top-2 of 3 experts\n")
    )


def test_every_switch_branch_is_drawn() -> None:
    g = (
        fl.Flow(nn.Identity())
        .switch(fl.FixedSelector(0), nn.Linear(4, 4), nn.Tanh(), lambda x: -x)
        .build()
    )
    dot = parse(g.dot())
    assert dot.label("switch_0") == "selector: FixedSelector"
    assert dot.nodes["switch_0"]["shape"] == "diamond"
    for i, title in enumerate(["[0] Linear\n20 params", "[1] Tanh", "[2] lambda"]):
        assert dot.label(f"switch_0.branch_{i}") == title
        (route,) = dot.edges_between("switch_0", f"switch_0.branch_{i}")
        assert route.label == str(i)
        assert dot.edges_between(f"switch_0.branch_{i}", "switch_0.out")
    assert dot.node_cluster["switch_0.branch_2"] == "cluster_switch_0"


@pytest.mark.parametrize(
    ("finish", "mode"),
    [
        (lambda b: b.each(), "each"),
        (lambda b: b.batched().each(), "each, batched"),
        (lambda b: b.slices(2), "slices(2)"),
        (lambda b: b.over("rows"), "over rows"),
        (lambda b: b.batched().over("rows"), "over rows, batched"),
    ],
)
def test_a_map_shows_its_mode(finish, mode: str) -> None:
    g = finish(fl.Flow(nn.Identity()).tag("rows").map(nn.Linear(2, 2))).build()
    dot = parse(g.dot())
    assert dot.label("map_0") == mode
    assert dot.nodes["map_0"]["shape"] == "parallelogram"
    assert dot.clusters["cluster_map_0"].attributes["label"] == f"map_0: map {mode}\nΣ 6 params"
    assert dot.label("map_0.body") == "body: Linear\n6 params"
    assert dot.edges_between("map_0", "map_0.body")
    assert dot.edges_between("map_0.body", "map_0.out")


def make_nested() -> fl.Graph:
    """outer -> middle (labelled) -> inner (labelled), each adding a Linear."""
    inner = fl.Flow(nn.Linear(4, 4)).through(nn.Tanh()).label("inner").build()
    middle = fl.Flow(nn.Linear(4, 4)).through(inner).label("middle").build()
    return fl.Flow(nn.Linear(4, 4)).through(middle).through(nn.ReLU()).build()


def test_nested_graphs_are_clusters_to_any_depth() -> None:
    g = make_nested()
    dot = parse(g.dot())
    assert dot.ancestors("middle.inner.Linear_0") == [
        "cluster_middle.inner",
        "cluster_middle",
        "cluster_level_2",
    ]
    assert dot.clusters["cluster_middle"].attributes["label"] == "Graph 'middle'\nΣ 40 params"
    assert dot.clusters["cluster_middle.inner"].attributes["label"] == "Graph 'inner'\nΣ 20 params"
    # the nested graphs' inputs carry the nested nodes' names; edges pass through them
    assert dot.nodes["middle"]["shape"] == "invhouse"
    assert dot.edges_between("Linear_0", "middle")
    assert dot.edges_between("middle", "middle.Linear_0")
    assert dot.edges_between("middle.Linear_0", "middle.inner")
    assert dot.edges_between("middle.inner.Tanh_0", "ReLU_0")  # out of both clusters
    assert leaf_counts(dot) == {"Linear_0": 20, "middle.Linear_0": 20, "middle.inner.Linear_0": 20}


def test_depth_closes_nested_graphs() -> None:
    g = make_nested()
    closed = parse(g.dot(depth=0))
    assert "cluster_middle" not in closed.clusters
    assert closed.nodes["middle"]["shape"] == "folder"
    assert closed.label("middle") == "middle\nGraph 'middle'\n40 params"
    assert closed.edges_between("Linear_0", "middle")
    assert closed.edges_between("middle", "ReLU_0")
    one = parse(g.dot(depth=1))
    assert "cluster_middle" in one.clusters
    assert "cluster_middle.inner" not in one.clusters
    assert one.label("middle.inner") == "inner\nGraph 'inner'\n20 params"
    assert parse(g.dot(depth=2)).clusters.keys() == parse(g.dot()).clusters.keys()


def test_nested_graph_inputs_receive_the_references() -> None:
    shift = fl.Flow(nn.Identity()).input("by").through(lambda x, b: x - b).using("by").build()
    g = fl.Flow(nn.Identity()).tag("orig").through(lambda x: 10 * x).through(shift).using("orig")
    dot = parse(g.build().dot())
    (ref,) = [e for e in dot.edges if e.label == "orig"]
    assert (ref.tail, ref.head) == ("Identity_0", "Graph_0.input_by")
    (inner_ref,) = [e for e in dot.edges if e.label == "by"]
    assert (inner_ref.tail, inner_ref.head) == ("Graph_0.input_by", "Graph_0.lambda_0")


def test_nested_state_is_drawn_inside_its_graph() -> None:
    cell = fl.Flow(nn.Linear(4, 4)).through(fl.StateAdd()).using("h").tag("h")
    g = fl.Flow(nn.Identity()).loop(cell).for_(4).build()
    dot = parse(g.dot())
    (state,) = [e for e in dot.edges if e.label == "state:h"]
    assert (state.tail, state.head) == ("loop_0.body.StateAdd_0", "loop_0.body.state_h_0")
    assert dot.ancestors("loop_0.body.state_h_0")[:2] == ["cluster_loop_0.body", "cluster_loop_0"]
    assert cluster_total(dot, "cluster_loop_0") == 20


def test_a_construct_inside_a_nested_graph() -> None:
    inner = fl.Flow(nn.Identity()).switch(fl.FixedSelector(1), nn.Tanh(), nn.ReLU()).build()
    g = fl.Flow(nn.Linear(2, 2)).gate(fl.SigmoidRouter(2, 2), inner, nn.Identity()).build()
    dot = parse(g.dot())
    assert dot.ancestors("gate_0.expert_0.switch_0.branch_1") == [
        "cluster_gate_0.expert_0.switch_0",
        "cluster_gate_0.expert_0",
        "cluster_gate_0",
        "cluster_level_2",
    ]
    assert dot.edges_between("gate_0", "gate_0.expert_0")  # the router to the graph's input
    assert dot.edges_between("gate_0.expert_0.switch_0.out", "gate_0.out")
    g(torch.randn(3, 2))  # and it runs
