"""Property tests: replacing a random registered module of a random graph gives the graph
that a fresh build with the new module gives, in outputs, gradients, state, repr and hash."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import flowdl as fl
from tests.replace.test_replacement import WAYS, never_runs, replace
from tests.strategies import (
    BATCH,
    CHAIN_BATCH,
    CHAIN_DIM,
    DIM,
    Affine,
    add,
    apply_flow,
    contains_bad,
    module_for,
    realise,
    specs,
    structured_chains,
)
from tests.support import Mix, assert_same_as_oracle


def swapped(tree: Any, old: Any, new: Any) -> Any:
    """A realised spec with the module `old` replaced by `new`."""
    if tree is old:
        return new
    if isinstance(tree, tuple):
        return tuple(swapped(part, old, new) for part in tree)
    if isinstance(tree, list):
        return [swapped(part, old, new) for part in tree]
    return tree


def located(graph: nn.Module, module: nn.Module) -> tuple[nn.Module, str]:
    """The parent holding `module` and the name it holds it under."""
    path = next(name for name, m in graph.named_modules() if m is module)
    parent, _, name = path.rpartition(".")
    return graph.get_submodule(parent), name


@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    spec=specs,
    seed=st.integers(0, 2**16),
    pick=st.integers(0, 1000),
    how=st.sampled_from(WAYS),
    a=st.floats(0.5, 1.2),
    b=st.floats(-0.5, 0.5),
)
def test_a_replaced_module_anywhere_in_a_nesting_equals_a_fresh_build(
    spec: Any, seed: int, pick: int, how: str, a: float, b: float
) -> None:
    torch.manual_seed(seed)
    node = realise(spec)
    assume(not contains_bad(node))
    graph = add(fl.Flow(nn.Identity()), node).build()
    leaves = [m for m in graph.modules() if isinstance(m, Affine)]
    assume(leaves)
    old = leaves[pick % len(leaves)]
    parent, name = located(graph, old)
    event(f"parent: {type(parent).__name__}")
    new = Affine(a, b)
    replace(parent, name, new, how)
    never_runs(old)
    fresh = add(fl.Flow(nn.Identity()), swapped(node, old, new)).build()
    assert repr(graph) == repr(fresh)
    assert fl.structural_hash(graph) == fl.structural_hash(fresh)
    x = torch.randn(BATCH, DIM, dtype=torch.float64, requires_grad=True)
    try:
        fresh(x)
    except fl.GraphError:  # nested slices that do not divide the width
        with pytest.raises(fl.GraphError, match="not divisible"):
            graph(x)
        return
    assert_same_as_oracle(graph, fresh, x, params=list(fresh.parameters()), none_is_zero=True)


@settings(max_examples=150, deadline=None)
@given(steps=structured_chains(), pick=st.integers(0, 100))
def test_a_replaced_node_module_keeps_the_state_and_equals_a_fresh_build(
    steps: list[tuple[Any, ...]], pick: int
) -> None:
    entry = Mix(CHAIN_DIM).double()
    modules = [module_for(step) for step in steps]

    def build(swap: dict[int, nn.Module]) -> fl.Graph:
        def use(module: Any) -> Any:
            if isinstance(module, list):
                return [swap.get(id(m), m) for m in module]
            return swap.get(id(module), module)

        flow = fl.Flow(use(entry))
        for step, module in zip(steps, modules, strict=True):
            flow = apply_flow(flow, step, use(module))
        return flow.build()

    try:
        graph = build({})
    except fl.BuildError:
        assume(False)
    names = list(graph.input_names[1:])

    def call(g: fl.Graph, x: Tensor, aux: list[Tensor]) -> Tensor:
        return g(x, *aux)

    inputs = [
        (
            torch.randn(CHAIN_BATCH, CHAIN_DIM, dtype=torch.float64),
            [torch.randn(CHAIN_BATCH, CHAIN_DIM, dtype=torch.float64) for _ in names],
        )
        for _ in range(3)
    ]
    call(graph, *inputs[0])  # state from a first call, before the replacement
    mixes = [(n, m) for n, m in graph.named_children() if isinstance(m, Mix)]
    name, old = mixes[pick % len(mixes)]
    new = Mix(CHAIN_DIM).double()
    setattr(graph, name, new)
    never_runs(old)
    fresh = build({id(old): new})
    event("with state" if graph._plan.cells else "stateless")
    for tag, cell in graph._plan.cells.items():
        fresh._plan.cells[tag].value = cell.value
    assert repr(graph) == repr(fresh)
    for x, aux in inputs[1:]:
        torch.testing.assert_close(call(graph, x, aux), call(fresh, x, aux), rtol=0, atol=1e-12)
