"""Property test: random nestings of constructs (the control tests' generator), some
with every module used twice, are drawn whole and counted once, at every depth."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from torch import nn

import flowdl as fl
from flowdl._control.gate import Gate
from flowdl._control.loop import Loop
from flowdl._control.switch import Switch
from tests.draw.counting import leaf_counts, total_of
from tests.draw.parsing import parse
from tests.strategies import add, contains_bad, realise, specs


def drawn(dot: Any, name: str) -> bool:
    return name in dot.nodes or f"cluster_{name}" in dot.clusters


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs, twice=st.booleans(), depth=st.sampled_from([None, 0, 1]))
def test_random_graphs_are_drawn_whole(spec: Any, twice: bool, depth: int | None) -> None:
    assume(not contains_bad(spec))
    node = realise(spec)
    flow = add(fl.Flow(nn.Identity()), node)
    if twice:
        flow = add(flow, node)  # the same modules again
    g = flow.build()
    dot = parse(g.dot(depth=depth))
    record = g._record
    for n in record.nodes:
        assert n.id in dot.nodes
        for producer in n.inputs:
            tail = record.nodes[producer].id
            assert any(
                (e.tail == tail or e.tail.startswith(tail + "."))
                and (e.head == n.id or e.head.startswith(n.id + "."))
                for e in dot.edges
            ), f"{tail} -> {n.id}"
        module = n.module
        if isinstance(module, Gate):
            assert all(drawn(dot, f"{n.id}.expert_{i}") for i in range(len(module.experts)))
        if isinstance(module, Switch):
            assert all(drawn(dot, f"{n.id}.branch_{i}") for i in range(len(module.branches)))
        if isinstance(module, Loop):
            bound = f"×{module.max_iter}" if module.mode == "for" else f"≤ {module.max_iter}"
            assert bound in dot.label(n.id)
    assert sum(leaf_counts(dot).values()) == total_of(g)
    assert g.summary(depth=depth).total_parameters == total_of(g)
