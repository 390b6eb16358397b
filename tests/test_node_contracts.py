"""The contract every kind of node keeps, checked on each entry of `tests.node_kinds`.

For each node kind: the graph equals its hand-written oracle in values and
gradients (float64), passes ``torch.autograd.gradcheck``, survives a checkpoint
into a fresh build, describes itself the same way in ``repr``, ``dot()`` and
``summary()``, copies and pickles into a graph that computes the same, computes
the same in fast mode, and keeps computing the same when each of its submodules
is replaced by a copy of itself.
"""

from __future__ import annotations

import copy
import pickle
from pathlib import Path

import pytest
import torch
from torch import nn

import flowdl as fl
from tests.node_kinds import NODE_KINDS, NodeKind
from tests.support import assert_same_as_oracle, gradcheck_graph

KINDS = pytest.mark.parametrize("kind", NODE_KINDS, ids=[k.name for k in NODE_KINDS])


def outputs(graph: nn.Module, inputs: tuple[torch.Tensor, ...], calls: int) -> list[torch.Tensor]:
    with torch.no_grad():
        return [graph(*inputs) for _ in range(calls)]


def assert_equal(got: list[torch.Tensor], want: list[torch.Tensor]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-12)


def test_the_registry_covers_every_builder_call_and_built_in_node() -> None:
    covered = {name for kind in NODE_KINDS for name in kind.covers}
    builder = {n for n in dir(fl.Flow) if not n.startswith("_")} - {"build"}
    builder |= {n for n in dir(fl.LoopBuilder) if not n.startswith("_")}
    builder |= {n for n in dir(fl.MapBuilder) if not n.startswith("_")}
    built_in = {
        name
        for name in fl.__all__
        if isinstance(getattr(fl, name), type)
        and issubclass(getattr(fl, name), nn.Module)
        and name != "Graph"
    }
    assert builder <= covered, builder - covered
    assert built_in <= covered, built_in - covered


@KINDS
def test_values_and_gradients_equal_the_oracle(kind: NodeKind) -> None:
    case = kind.case()
    for _ in range(case.calls):
        assert_same_as_oracle(case.graph, case.oracle, *case.inputs, none_is_zero=case.sparse)


@KINDS
def test_gradcheck(kind: NodeKind) -> None:
    case = kind.case()
    gradcheck_graph(case.graph, *case.inputs, before=case.graph.reset_state)


@KINDS
def test_a_checkpoint_loads_into_a_fresh_build(kind: NodeKind, tmp_path: Path) -> None:
    saved, fresh = kind.case(seed=0), kind.case(seed=1)
    file = tmp_path / "model.safetensors"
    fl.save_checkpoint(file, saved.graph)
    fl.load_checkpoint(file, fresh.graph)
    assert fresh.graph.state_dict().keys() == saved.graph.state_dict().keys()
    for name, value in saved.graph.state_dict().items():
        torch.testing.assert_close(fresh.graph.state_dict()[name], value, rtol=0, atol=0)
    want = outputs(saved.graph, saved.inputs, saved.calls)
    assert_equal(outputs(fresh.graph, saved.inputs, saved.calls), want)


@KINDS
def test_repr_dot_and_summary_describe_the_same_graph(kind: NodeKind) -> None:
    g = kind.case().graph
    record = g._record
    text = repr(g)
    assert text.startswith("Graph")
    assert all(f".{call.method}(" in text or call.method == "Flow" for call in record.calls)
    dot = g.dot()
    assert all(f'"{node.id}"' in dot for node in record.nodes if node.module is not None)
    summary = g.summary()
    named = {row.name for row in summary.rows}
    assert {node.id for node in record.nodes if node.module is not None} <= named
    assert summary.total_parameters == sum(p.numel() for p in g.parameters())
    assert g.summary(depth=None).total_parameters == summary.total_parameters


@KINDS
def test_copies_and_pickles_compute_the_same(kind: NodeKind) -> None:
    case = kind.case()
    g = case.graph
    if case.stateful:
        outputs(g, case.inputs, 1)  # copies carry the state of the last call
    twin, thawed = copy.deepcopy(g), pickle.loads(pickle.dumps(g))
    want = outputs(g, case.inputs, case.calls)
    for copied in (twin, thawed):
        assert_equal(outputs(copied, case.inputs, case.calls), want)
        assert {id(p) for p in copied.parameters()}.isdisjoint(id(p) for p in g.parameters())


@KINDS
def test_fast_mode_equals_the_oracle(kind: NodeKind) -> None:
    case = kind.case()
    case.graph.compile(backend="eager")
    for _ in range(case.calls):
        assert_same_as_oracle(case.graph, case.oracle, *case.inputs, none_is_zero=case.sparse)


@KINDS
def test_replacing_each_submodule_by_a_copy_computes_the_same(kind: NodeKind) -> None:
    case = kind.case()
    g, reference = case.graph, copy.deepcopy(case.graph)
    before = {id(p) for p in g.parameters()}
    plan = g._plan
    for name, child in list(g.named_children()):
        setattr(g, name, copy.deepcopy(child))
    assert g._plan is not plan
    assert before.isdisjoint(id(p) for p in g.parameters())
    assert_equal(outputs(g, case.inputs, case.calls), outputs(reference, case.inputs, case.calls))
