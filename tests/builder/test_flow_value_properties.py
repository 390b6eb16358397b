"""Property: extending a shared prefix is the same as writing the whole chain fresh.

A random prefix of builder calls is recorded once and extended by two random suffixes
(both derived before either is built); each extension must fail at the same call with
the same message as the fresh chain, or build a graph with the same structure, the same
outputs over several calls (state included) and the same gradients. The prefix itself
still builds what it built before it was extended.
"""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st

import flowdl as fl
from tests.strategies import CHAIN_BATCH as BATCH
from tests.strategies import CHAIN_DIM as DIM
from tests.strategies import apply_flow, chain_steps, module_for, structured_chains
from tests.support import Mix

Steps = list[tuple[Any, ...]]
Outcome = tuple[str, Any]

prefixes = st.one_of(st.lists(chain_steps, max_size=6), structured_chains(), structured_chains())


@st.composite
def suffixes(draw: st.DrawFn, own: str) -> Steps:
    """A chain whose own tags and inputs are named ``<own>t0``, ... (so they rarely clash
    with the prefix's); each reference reads one of its own tags or one of the prefix's."""
    steps = draw(st.one_of(st.lists(chain_steps, max_size=4), structured_chains()))
    out = []
    for step in steps:
        if step[0] in ("tag", "tag_group", "input"):
            step = (step[0], own + step[1])
        elif step[0] == "using":
            step = ("using", *(n if draw(st.booleans()) else own + n for n in step[1:]))
        out.append(step)
    return out


def extend(flow: fl.Flow, steps: Steps, modules: list[Any], start: int) -> fl.Flow | Outcome:
    """`flow` with `steps` applied, or ``("error", (call index, message))``."""
    for k, (step, module) in enumerate(zip(steps, modules, strict=True)):
        try:
            flow = apply_flow(flow, step, module)
        except fl.BuildError as error:
            return "error", (start + k, str(error))
    return flow


def build(flow: fl.Flow | Outcome) -> Outcome:
    if isinstance(flow, tuple):
        return flow
    try:
        return "built", flow.build()
    except fl.BuildError as error:
        return "error", ("build", str(error))


def structure(graph: fl.Graph) -> list[tuple[Any, ...]]:
    return [
        (n.id, n.kind, n.inputs, n.ref_names, n.tags, n.module, n.input_name, n.state_tag)
        for n in graph._record.nodes
    ]


def assert_same(got: Outcome, want: Outcome) -> None:
    assert got[0] == want[0], f"{got} != {want}"
    if got[0] == "error":
        assert got[1] == want[1]
        return
    g, w = got[1], want[1]
    assert repr(g) == repr(w)
    assert structure(g) == structure(w)
    assert (g.input_names, g.tags) == (w.input_names, w.tags)
    aux = [torch.randn(BATCH, DIM, dtype=torch.float64) for _ in g.input_names[1:]]
    for call in range(3):  # forward references carry state from call to call
        x = torch.randn(BATCH, DIM, dtype=torch.float64)
        out_g, out_w = g(x, *aux), w(x, *aux)
        torch.testing.assert_close(out_g, out_w, rtol=0, atol=0)
        params = list(g.parameters())
        if call == 0 and params:
            cot = torch.randn_like(out_g)
            grads_g = torch.autograd.grad(out_g, params, cot, allow_unused=True)
            grads_w = torch.autograd.grad(out_w, params, cot, allow_unused=True)
            for a, b in zip(grads_g, grads_w, strict=True):
                assert (a is None) == (b is None)
                if a is not None:
                    torch.testing.assert_close(a, b, rtol=0, atol=0)


@settings(max_examples=400, deadline=None)
@given(prefix=prefixes, one=suffixes("one_"), two=suffixes("two_"))
def test_extending_a_shared_prefix_equals_building_fresh(
    prefix: Steps, one: Steps, two: Steps
) -> None:
    entry = Mix(DIM).double()
    modules = {
        name: [module_for(s) for s in steps]
        for name, steps in (("prefix", prefix), ("one", one), ("two", two))
    }

    def fresh(suffix: Steps, suffix_modules: list[Any]) -> Outcome:
        flow = extend(fl.Flow(entry), prefix + suffix, modules["prefix"] + suffix_modules, 0)
        return build(flow)

    trunk = extend(fl.Flow(entry), prefix, modules["prefix"], 0)
    if isinstance(trunk, tuple):
        event("the prefix fails")
        assert_same(trunk, fresh([], []))
        return
    before = build(trunk)
    extended = [
        extend(trunk, suffix, modules[name], len(prefix))
        for name, suffix in (("one", one), ("two", two))
    ]
    outcomes = [build(flow) for flow in extended]
    event(" and ".join(o[0] for o in outcomes))
    assert_same(outcomes[0], fresh(one, modules["one"]))
    assert_same(outcomes[1], fresh(two, modules["two"]))
    assert_same(build(trunk), before)
