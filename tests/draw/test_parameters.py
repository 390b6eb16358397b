"""Unique parameter counts: a tensor is counted once, at its first use; reuse is marked."""

from __future__ import annotations

import torch
from torch import nn

import flowdl as fl
from tests.draw.counting import cluster_total, leaf_counts, total_of
from tests.draw.parsing import parse


def check_totals(g: fl.Graph) -> dict[str, int]:
    """Drawing, summary and `parameters()` agree; returns the drawing's leaf counts."""
    for depth in (None, 0, 1):
        counts = leaf_counts(parse(g.dot(depth=depth)))
        assert sum(counts.values()) == total_of(g), depth
        summary = g.summary(depth=depth)
        assert summary.total_parameters == total_of(g)
        leaves = [r for i, r in enumerate(summary.rows) if not _has_children(summary.rows, i)]
        assert sum(r.parameters for r in leaves) == total_of(g)
    return leaf_counts(parse(g.dot()))


def _has_children(rows, i: int) -> bool:
    return i + 1 < len(rows) and rows[i + 1].level > rows[i].level


def test_a_module_used_twice_is_counted_once_and_marked() -> None:
    layer = nn.Linear(4, 4)
    g = fl.Flow(layer).through(nn.ReLU()).through(layer).build()
    counts = check_totals(g)
    assert counts == {"Linear_0": 20}
    label = parse(g.dot()).label("Linear_1")
    assert label == "Linear_1\nsame module as Linear_0"
    row = {r.name: r for r in g.summary().rows}["Linear_1"]
    assert (row.parameters, row.same_module_as) == (0, "Linear_0")


def test_tied_weights_are_counted_once() -> None:
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    b.weight = a.weight  # tied, as in a language model's embedding and output layer
    g = fl.Flow(a).through(torch.tanh).through(b).build()
    assert total_of(g) == 16 + 4 + 4
    counts = check_totals(g)
    assert counts == {"Linear_0": 20, "Linear_1": 4}
    assert parse(g.dot()).label("Linear_1") == "Linear_1\n4 params\nshares 16 with Linear_0"
    row = {r.name: r for r in g.summary().rows}["Linear_1"]
    assert (row.parameters, row.shared, row.shared_with) == (4, 16, ("Linear_0",))


def test_frozen_parameters_are_counted_and_marked() -> None:
    frozen = nn.Linear(3, 3)
    frozen.requires_grad_(False)
    half = nn.Linear(3, 3)
    half.bias.requires_grad_(False)
    g = fl.Flow(frozen).through(half).build()
    dot = parse(g.dot())
    assert dot.label("Linear_0") == "Linear_0\n12 params (frozen)"
    assert dot.label("Linear_1") == "Linear_1\n12 params (3 frozen)"
    summary = g.summary()
    assert (summary.total_parameters, summary.trainable_parameters) == (24, 9)
    assert summary.frozen_parameters == 15


def test_the_same_expert_twice_counts_once_inside_the_gate() -> None:
    expert = nn.Linear(4, 4)
    g = fl.Flow(nn.Identity()).gate(fl.SoftmaxRouter(4, 2), expert, expert).build()
    counts = check_totals(g)
    assert counts == {"gate_0": 10, "gate_0.expert_0": 20}
    dot = parse(g.dot())
    assert "same module as gate_0.expert_0" in dot.label("gate_0.expert_1")
    assert cluster_total(dot, "cluster_gate_0") == 30
    row = {r.name: r for r in g.summary().rows}["gate_0"]
    assert (row.parameters, row.shared) == (30, 0)  # sharing inside the gate is not sharing


def test_a_module_shared_between_a_nested_graph_and_the_outer_one() -> None:
    layer = nn.Linear(4, 4)
    inner = fl.Flow(layer).through(nn.Tanh()).label("inner").build()
    g = fl.Flow(inner).through(layer).build()
    counts = check_totals(g)
    assert counts == {"inner.Linear_0": 20}
    assert "same module as inner.Linear_0" in parse(g.dot()).label("Linear_0")
    closed = parse(g.dot(depth=0))
    assert leaf_counts(closed) == {"inner": 20}
    assert closed.label("Linear_0") == "Linear_0\nshares 20 with inner"  # a part of it


def test_a_graph_used_twice_is_drawn_open_once() -> None:
    block = fl.Flow(nn.Linear(8, 8)).through(nn.GELU()).label("block").build()
    tower = fl.Flow(nn.Linear(4, 8)).also(block).also(block).through(nn.Linear(8, 1)).build()
    assert total_of(tower) == 121  # the tutorial's number
    counts = check_totals(tower)
    assert counts == {"Linear_0": 40, "block.Linear_0": 72, "Linear_1": 9}
    dot = parse(tower.dot())
    assert "cluster_block" in dot.clusters
    assert dot.nodes["block_1"]["shape"] == "folder"
    assert "same module as block" in dot.label("block_1")


def test_a_learned_initial_state_is_counted_at_its_state_read() -> None:
    init = nn.Parameter(torch.zeros(1, 4))
    g = fl.Flow(nn.Identity()).through(fl.StateAdd()).using("h").tag("h", init=init).build()
    assert total_of(g) == 4
    assert check_totals(g) == {"state_h_0": 4}


def test_callables_have_no_parameters() -> None:
    layer = nn.Linear(2, 2)
    g = fl.Flow(lambda x: layer(x)).build()  # a lambda does not bring the layer's weights
    assert total_of(g) == 0
    assert check_totals(g) == {}
