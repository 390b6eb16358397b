"""`g.summary()`: a table whose counts agree with `g.dot()` and `g.parameters()`."""

from __future__ import annotations

import io

import torch
from rich.console import Console
from torch import nn

import flowdl as fl
from tests.draw.counting import leaf_counts, total_of
from tests.draw.parsing import parse


def model() -> fl.Graph:
    shared = nn.Linear(4, 4)
    return (
        fl.Flow(nn.Linear(2, 4))
        .tag("embed")
        .also(shared)
        .gate(fl.SoftmaxRouter(4, 2), nn.Linear(4, 4), shared)
        .loop(nn.Linear(4, 4))
        .for_(3)
        .tag("refined")
        .through(nn.Linear(4, 1))
        .label("model")
        .build()
    )


def test_rows_kinds_and_counts() -> None:
    g = model()
    summary = g.summary()
    rows = [(r.name, r.kind, r.tags, r.parameters, r.trainable) for r in summary.rows]
    assert rows == [
        ("input", "input", (), 0, 0),
        ("Linear_0", "Linear", ("embed",), 12, 12),
        ("Linear_1", "Linear", (), 20, 20),
        ("add_0", "residual: stream + module", (), 0, 0),
        ("gate_0", "gate (2 experts)", (), 10 + 20, 30),
        ("loop_0", "loop ×3", ("refined",), 20, 20),
        ("Linear_2", "Linear", (), 5, 5),
    ]
    gate = summary.rows[4]
    assert (gate.shared, gate.shared_with) == (20, ("Linear_1",))
    assert summary.total_parameters == total_of(g) == 12 + 20 + 30 + 20 + 5
    assert summary.trainable_parameters == summary.total_parameters
    assert summary.title == "Graph 'model'"


def test_counts_equal_the_drawing() -> None:
    g = model()
    counts = leaf_counts(parse(g.dot()))
    inner = g.summary(depth=None)
    leaves = {
        r.name.split(" ")[0]: r.parameters
        for i, r in enumerate(inner.rows)
        if r.parameters and not (i + 1 < len(inner.rows) and inner.rows[i + 1].level > r.level)
    }
    assert leaves == counts
    top = {r.name: r.parameters for r in g.summary().rows}
    assert top["gate_0"] == counts["gate_0"] + counts["gate_0.expert_0"]


def test_depth_lists_what_is_inside_nodes() -> None:
    summary = model().summary(depth=1)
    names = [("  " * r.level) + r.name for r in summary.rows]
    assert names[4:9] == [
        "gate_0",
        "  gate_0 (router)",
        "  gate_0.expert_0",
        "  gate_0.expert_1",
        "loop_0",
    ]
    assert names[9] == "  loop_0.body"
    expert = summary.rows[7]
    assert (expert.parameters, expert.same_module_as) == (0, "Linear_1")


def test_the_table_text() -> None:
    g = model()
    text = str(g.summary())
    lines = text.splitlines()
    assert lines[0] == "Graph 'model'"
    header = lines[2].split()
    assert header == ["node", "kind", "tags", "output", "shape", "parameters", "trainable"]
    gate_line = next(line for line in lines if line.lstrip().startswith("gate_0"))
    assert "30 (+20 shared with Linear_1)" in gate_line
    assert lines[-1] == (
        "87 parameters: 87 trainable, 0 frozen; a tensor used twice is counted once, where it "
        "is first used"
    )
    assert repr(g.summary()) == text
    assert "\x1b[" not in text  # plain text, no terminal colours


def test_output_shapes_come_from_the_last_forward() -> None:
    g = model()
    assert {r.output_shape for r in g.summary().rows} == {None}
    g(torch.randn(5, 2))
    shapes = {r.name: r.output_shape for r in g.summary().rows}
    assert shapes["Linear_0"] == (5, 4)
    assert shapes["loop_0"] == (5, 4)
    assert shapes["gate_0"] is None  # untagged, not profiled
    g.enable_profiling()
    g(torch.randn(6, 2))
    shapes = {r.name: r.output_shape for r in g.summary().rows}
    assert shapes == {
        "input": None,
        "Linear_0": (6, 4),
        "Linear_1": (6, 4),
        "add_0": (6, 4),
        "gate_0": (6, 4),
        "loop_0": (6, 4),
        "Linear_2": (6, 1),
    }
    assert "[6, 1]" in str(g.summary())


def test_rich_renders_it() -> None:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(model().summary())
    assert "gate (2 experts)" in console.file.getvalue()  # type: ignore[attr-defined]


def test_nested_graph_rows() -> None:
    inner = fl.Flow(nn.Linear(3, 3)).input("aux").through(fl.Add()).using("aux").label("inner")
    g = fl.Flow(nn.Identity()).tag("a").through(inner.build()).using("a").build()
    rows = [(r.level, r.name, r.parameters) for r in g.summary(depth=None).rows]
    assert rows == [
        (0, "input", 0),
        (0, "Identity_0", 0),
        (0, "inner", 12),
        (1, "inner.Linear_0", 12),
        (1, "inner.input_aux", 0),
        (1, "inner.Add_0", 0),
    ]
