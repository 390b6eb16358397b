"""Descriptions made invalid on purpose: each holds one documented mistake that
`fl.Flow` must reject with `fl.BuildError` (at the call that makes it or at
``build()``), anywhere in the tree of graphs.

`make_invalid(description, mistake, rng)` picks a graph of the tree (the top level or
a nested one) and a place in it, and puts the mistake there.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import replace

from flowdl._fuzz.ir import (
    AuxInput,
    Description,
    Gate,
    GraphSpec,
    Halt,
    Init,
    Leaf,
    Loop,
    Map,
    Merge,
    Router,
    Selector,
    Split,
    Step,
    Switch,
    Tag,
    Through,
    defined,
    nested_graphs,
    rewrite,
)

_Mutation = Callable[[GraphSpec, random.Random], GraphSpec]


def _leaf(g: GraphSpec, arity: int, kind: str = "linear") -> Leaf:
    return Leaf(kind, 1, g.dim, g.dim, arity)


def _insert(g: GraphSpec, rng: random.Random, *steps: Step) -> GraphSpec:
    at = rng.randint(0, len(g.steps))
    return replace(g, steps=(*g.steps[:at], *steps, *g.steps[at:]))


def _append(g: GraphSpec, *steps: Step) -> GraphSpec:
    return replace(g, steps=(*g.steps, *steps))


def _unknown_tag(g: GraphSpec, rng: random.Random) -> GraphSpec:
    return _insert(g, rng, Through(_leaf(g, 1, "stateadd"), ("nowhere",)))


def _open_loop(g: GraphSpec, rng: random.Random) -> GraphSpec:
    return _insert(g, rng, Loop(_leaf(g, 0), "open", 2))


def _zero_count(g: GraphSpec, rng: random.Random) -> GraphSpec:
    mode = rng.choice(["for", "while", "until"])
    halt = Halt("rowsum", 1, 0.0) if mode != "for" else None
    return _insert(g, rng, Loop(_leaf(g, 0), mode, 0, halt))


def _router_width(g: GraphSpec, rng: random.Random) -> GraphSpec:
    n = rng.randint(2, 3)
    kind = rng.choice(["softmax", "topk"])
    router = Router(kind, 1, n + rng.choice([-1, 1]) if n > 2 else n + 1, 1)
    return _insert(g, rng, Gate(router, tuple(_leaf(g, 0) for _ in range(n))))


def _one_expert(g: GraphSpec, rng: random.Random) -> GraphSpec:
    return _insert(g, rng, Gate(Router("softmax", 1, 1), (_leaf(g, 0),)))


def _one_branch(g: GraphSpec, rng: random.Random) -> GraphSpec:
    return _insert(g, rng, Switch(Selector("fixed", 0, 1, 0), (_leaf(g, 0),)))


def _selector_index(g: GraphSpec, rng: random.Random) -> GraphSpec:
    n = rng.randint(2, 3)
    return _insert(g, rng, Switch(Selector("fixed", 0, n, n), tuple(_leaf(g, 0) for _ in range(n))))


def _selector_width(g: GraphSpec, rng: random.Random) -> GraphSpec:
    n = rng.randint(2, 3)
    branches = tuple(_leaf(g, 0) for _ in range(n))
    return _insert(g, rng, Switch(Selector("argmax", 1, n + 1), branches))


def _duplicate_tag(g: GraphSpec, rng: random.Random) -> GraphSpec:
    known = defined(g.steps)
    name = rng.choice(known) if known else "twice"
    return _append(g, Tag(name)) if known else _append(g, Tag(name), Tag(name))


def _group_ref(g: GraphSpec, rng: random.Random) -> GraphSpec:
    split = Split((_leaf(g, 0), _leaf(g, 0)), Merge("add"), group="grp")
    return _insert(g, rng, split, Through(_leaf(g, 1, "stateadd"), ("grp",)))


def _open_split(g: GraphSpec, rng: random.Random) -> GraphSpec:
    return _insert(g, rng, Split((_leaf(g, 0), _leaf(g, 0)), None))


def _one_split(g: GraphSpec, rng: random.Random) -> GraphSpec:
    return _insert(g, rng, Split((_leaf(g, 0),), Merge("add")))


def _single_group(g: GraphSpec, rng: random.Random) -> GraphSpec:
    return _insert(g, rng, Tag("lonely", group=True))


def _duplicate_input(g: GraphSpec, rng: random.Random) -> GraphSpec:
    name = g.inputs[0].name if g.inputs else "extra"
    extra = (AuxInput(name),) if g.inputs else (AuxInput(name), AuxInput(name))
    return replace(g, inputs=(*g.inputs, *extra))


def _zero_slices(g: GraphSpec, rng: random.Random) -> GraphSpec:
    return _insert(g, rng, Map(_leaf(g, 0), "slices", 0))


def _unknown_over(g: GraphSpec, rng: random.Random) -> GraphSpec:
    return _insert(g, rng, Map(_leaf(g, 0), "over", tag="nowhere"))


def _arity(g: GraphSpec, rng: random.Random) -> GraphSpec:
    if rng.random() < 0.5:
        return _insert(g, rng, Tag("seen"), Through(_leaf(g, 0), ("seen",)))
    wants_one = GraphSpec("needy", g.dim, _leaf(g, 0), (AuxInput("needyin"),))
    return _insert(g, rng, Through(wants_one))


def _duplicate_ref(g: GraphSpec, rng: random.Random) -> GraphSpec:
    return _insert(g, rng, Tag("seen"), Through(_leaf(g, 2, "stateadd"), ("seen", "seen")))


def _init_without_state(g: GraphSpec, rng: random.Random) -> GraphSpec:
    return _insert(g, rng, Tag("unread", Init("shape", 1)))


def _duplicate_label(g: GraphSpec, rng: random.Random) -> GraphSpec:
    twin = GraphSpec("twin", g.dim, _leaf(g, 0))
    return _insert(g, rng, Through(twin), Through(replace(twin, entry=_leaf(g, 0, "tanh"))))


_MUTATIONS: dict[str, _Mutation] = {
    "unknown-tag": _unknown_tag,
    "open-loop": _open_loop,
    "zero-count": _zero_count,
    "router-width": _router_width,
    "one-expert": _one_expert,
    "one-branch": _one_branch,
    "selector-index": _selector_index,
    "selector-width": _selector_width,
    "duplicate-tag": _duplicate_tag,
    "group-ref": _group_ref,
    "open-split": _open_split,
    "one-split": _one_split,
    "single-group": _single_group,
    "duplicate-input": _duplicate_input,
    "zero-slices": _zero_slices,
    "unknown-over": _unknown_over,
    "arity": _arity,
    "duplicate-ref": _duplicate_ref,
    "init-without-state": _init_without_state,
    "duplicate-label": _duplicate_label,
}

MISTAKES = tuple(_MUTATIONS)
"""The mistakes `make_invalid` knows."""


def make_invalid(description: Description, mistake: str, rng: random.Random) -> Description:
    """`description` with `mistake` put in one of its graphs (``invalid`` says which).

    Example:
        >>> import random
        >>> from flowdl._fuzz.describe import describe
        >>> bad = make_invalid(describe(1), "open-loop", random.Random(0))
        >>> bad.invalid.split()[0]
        'open-loop'
    """
    top = description.graph
    # a nested graph reads refs positionally: an input added to it would be an arity error
    candidates = [top, *(g for g in nested_graphs(top) if mistake != "duplicate-input")]
    target = rng.choice(candidates)
    graph = rewrite(top, target.uid, lambda g: _MUTATIONS[mistake](g, rng))
    assert isinstance(graph, GraphSpec)
    where = "" if target is top else f" in nested graph {target.uid}"
    return replace(description, graph=graph, invalid=f"{mistake}{where}")
