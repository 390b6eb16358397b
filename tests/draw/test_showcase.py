"""The showcase (examples/showcase.py): every builder method in one graph, drawn whole."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path
from types import ModuleType

import pytest
import torch

import flowdl as fl
from flowdl._ir.nodes import NodeKind
from tests.draw.counting import leaf_counts, total_of
from tests.draw.parsing import Dot, parse

ROOT = Path(__file__).resolve().parents[2]


def load_showcase() -> ModuleType:
    spec = importlib.util.spec_from_file_location("showcase", ROOT / "examples" / "showcase.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def showcase() -> fl.Graph:
    return load_showcase().build_showcase()


@pytest.fixture(scope="module")
def dot(showcase: fl.Graph) -> Dot:
    return parse(showcase.dot())


def within(name: str, node_id: str) -> bool:
    """Whether DOT node `name` belongs to the drawing of node `node_id`."""
    return name == node_id or name.startswith(node_id + ".")


def test_it_uses_every_builder_method(showcase: fl.Graph) -> None:
    used = {call.method for call in showcase._record.calls}
    methods = {"Flow", "through", "also", "fork", "split", "merge", "tag", "tag_group"}
    methods |= {"input", "using", "loop", "for_", "while_", "until", "gate", "switch"}
    methods |= {"map", "each", "over", "slices", "batched", "label"}
    assert methods <= used
    public = {n for n in dir(fl.Flow) if not n.startswith("_")} - {"build"}
    public |= {n for n in dir(fl.LoopBuilder) if not n.startswith("_")}
    public |= {n for n in dir(fl.MapBuilder) if not n.startswith("_")}
    assert public <= used, public - used
    routers = {
        type(n.module.router).__name__ for n in showcase._record.nodes if n.id.startswith("gate")
    }
    assert routers == {"SoftmaxRouter", "TopKRouter"}  # a dense and a sparse gate


def test_it_runs(showcase: fl.Graph) -> None:
    showcase.reset_state()
    y = showcase(torch.randn(3, 2), torch.randn(3, 8))
    assert y.shape == (3, 2)


def test_every_node_is_drawn_in_its_level(showcase: fl.Graph, dot: Dot) -> None:
    levels = showcase._plan.node_levels
    for node in showcase._record.nodes:
        assert node.id in dot.nodes, node.id
        assert f"cluster_level_{levels[node.index]}" in dot.ancestors(node.id)


def test_every_edge_is_drawn(showcase: fl.Graph, dot: Dot) -> None:
    nodes = showcase._record.nodes
    for node in nodes:
        for k, producer in enumerate(node.inputs):
            edges = [
                e
                for e in dot.edges
                if within(e.tail, nodes[producer].id) and within(e.head, node.id)
            ]
            assert edges, f"{nodes[producer].id} -> {node.id}"
            if k >= node.n_stream:
                tag = node.ref_names[k - node.n_stream]
                assert any(e.label == tag and e.attributes["style"] == "dashed" for e in edges)


def test_every_tag_is_shown(showcase: fl.Graph, dot: Dot) -> None:
    for tag, index in showcase._record.tags.items():
        node_id = showcase._record.nodes[index].id
        texts = [dot.label(node_id)] + [
            dot.clusters[c].attributes["label"] for c in dot.ancestors(node_id)[:1]
        ]
        assert any(f"#{tag}" in text.split("\n")[-1].split() for text in texts), tag
    assert set(showcase.tag_groups["heads"]) == {"heads_0", "heads_1"}


def test_loops_show_their_counts(dot: Dot) -> None:
    assert dot.label("loop_0") == "×2"
    assert dot.label("loop_1") == "while ≤ 5"
    assert dot.label("loop_2") == "until ≤ 7"
    repeats = {
        e.tail.split(".")[0]: e.label
        for e in dot.edges
        if e.attributes.get("color") == "#8e44ad" and e.head.count(".") == 0
    }
    assert repeats == {"loop_0": "×2", "loop_1": "≤ 5", "loop_2": "≤ 7"}
    # the loop body is a nested graph drawn once, not once per iteration
    assert sum(1 for n in dot.nodes if n.endswith("GELU_0") and within(n, "loop_0")) == 1


def test_state_edge(dot: Dot) -> None:
    (state,) = [e for e in dot.edges if e.label.startswith("state:")]
    assert (state.tail, state.head, state.label) == ("StateAdd_0", "state_memory_0", "state:memory")
    assert state.attributes["style"] == "dotted"


def test_every_branch_and_expert(dot: Dot) -> None:
    assert {f"gate_0.expert_{i}" for i in range(2)} <= set(dot.nodes)
    assert {f"gate_1.expert_{i}" for i in range(4)} <= set(dot.nodes)
    assert "switch_0.branch_0" in dot.nodes
    assert "cluster_switch_0.branch_1" in dot.clusters  # the unbuilt flow, drawn open
    assert [dot.label(f"map_{i}") for i in range(3)] == [
        "slices(4)",
        "each",
        "over halves, batched",
    ]


def test_parameters_agree_everywhere(showcase: fl.Graph, dot: Dot) -> None:
    counts = leaf_counts(dot)
    assert sum(counts.values()) == total_of(showcase)
    assert showcase.summary().total_parameters == total_of(showcase)
    assert dot.label("Linear_3") == "Linear_3\nsame module as Linear_2"
    assert "Linear_3" not in counts


def test_the_drawing_has_one_node_per_record_node_kind(showcase: fl.Graph, dot: Dot) -> None:
    kinds = {node.kind for node in showcase._record.nodes}
    assert kinds == set(NodeKind)


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_the_script_writes_dot_and_both_svgs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert load_showcase().main([str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "showcase-profile.svg",
        "showcase.dot",
        "showcase.svg",
    ]
    assert "<svg" in (tmp_path / "showcase.svg").read_text()
    assert "Forward: " in (tmp_path / "showcase-profile.svg").read_text()
    parse((tmp_path / "showcase.dot").read_text())
    out = capsys.readouterr().out
    assert "Graph 'showcase'" in out
    assert "Forward:" in out
    assert "wrote " in out
