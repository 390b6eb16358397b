"""Descriptions of graphs for the structural-hash properties, and the mutations of each.

A description is a tuple of steps, each a tuple naming a builder call and every
argument of it that changes what the graph computes: modules and plain callables,
merge kinds, a loop's mode, count and halt condition, a router's kind and `k`, a
switch's selector, a map's options, a tag's declared initial value, the direction of
a reference (an earlier value or the previous call's), a residual, the graph's input
names and which of them a module reads. `build` makes a fresh graph from one (new
modules every time); `mutations` lists, for every argument of every step, the
description with that one argument changed to another value that computes something
else. Nothing here runs a graph: the hash is a property of the built structure.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import torch
from hypothesis import strategies as st
from torch import Tensor, nn

import flowdl as fl
from tests.support import Mix

D = 4
"""The width of every module."""

Desc = tuple[Any, ...]

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "sigmoid": nn.Sigmoid}
FUNCTIONS: dict[str, Any] = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}


def scale(x: Tensor, factor: float = 1.0) -> Tensor:
    """``factor * x``: used through `functools.partial`, whose argument is structure."""
    return factor * x


def halt_by_norm(state: Tensor) -> Tensor:
    return state.norm(dim=-1) - 2.0


def halt_by_mean(state: Tensor) -> Tensor:
    return state.mean(dim=-1) - 0.5


HALT_FUNCTIONS: dict[str, Any] = {"norm": halt_by_norm, "mean": halt_by_mean}


def ones_like_stream(stream: Tensor) -> Tensor:
    return torch.ones_like(stream)


def halves_like_stream(stream: Tensor) -> Tensor:
    return torch.full_like(stream, 0.5)


INIT_FUNCTIONS: dict[str, Any] = {"ones": ones_like_stream, "halves": halves_like_stream}

# ------------------------------------------------------------------ strategies

modules = st.one_of(
    st.just(("linear",)),
    st.tuples(st.just("act"), st.sampled_from(sorted(ACTIVATIONS))),
    st.tuples(st.just("fn"), st.sampled_from(sorted(FUNCTIONS))),
    st.tuples(st.just("dropout"), st.sampled_from([0.1, 0.2, 0.5])),
    st.tuples(st.just("scale"), st.sampled_from([0.5, 2.0, 3.0])),
)
"""A node's module: a Linear, an activation module, a function, a Dropout, a partial."""

inner_steps = st.tuples(st.sampled_from(["through", "also"]), modules)
bodies = st.one_of(
    modules, st.tuples(st.just("flow"), st.lists(inner_steps, min_size=1, max_size=2).map(tuple))
)
"""A construct's inner module: a module, or a nested graph of one or two steps."""

merges = st.one_of(
    st.tuples(st.sampled_from(["add", "mean"])), st.tuples(st.just("cat"), st.sampled_from([0, -1]))
)
halts = st.one_of(
    st.tuples(st.just("threshold"), st.sampled_from([0.5, 1.0, 2.0])),
    st.just(("learned",)),
    st.tuples(st.just("fn"), st.sampled_from(sorted(HALT_FUNCTIONS))),
)
inits = st.one_of(
    st.none(),
    st.tuples(st.just("shape"), st.integers(1, 3)),
    st.tuples(st.sampled_from(["tensor", "param"]), st.integers(1, 3)),
    st.tuples(st.just("fn"), st.sampled_from(sorted(INIT_FUNCTIONS))),
)


@st.composite
def loops(draw: st.DrawFn) -> Desc:
    mode = draw(st.sampled_from(["for", "while", "until"]))
    halt = None if mode == "for" else draw(halts)
    return ("loop", draw(bodies), mode, draw(st.integers(1, 4)), halt)


@st.composite
def gates(draw: st.DrawFn) -> Desc:
    experts = tuple(draw(st.lists(bodies, min_size=2, max_size=3)))
    kind = draw(st.sampled_from(["softmax", "sigmoid", "topk"]))
    if kind != "topk":
        return ("gate", (kind,), experts)
    k = draw(st.integers(1, len(experts)))
    renormalize = k > 1 and draw(st.booleans())
    return ("gate", ("topk", k, renormalize), experts)


@st.composite
def switches(draw: st.DrawFn) -> Desc:
    branches = tuple(draw(st.lists(bodies, min_size=2, max_size=3)))
    if draw(st.booleans()):
        return ("switch", ("argmax",), branches)
    return ("switch", ("fixed", draw(st.integers(0, len(branches) - 1))), branches)


@st.composite
def maps(draw: st.DrawFn) -> Desc:
    mode = draw(st.sampled_from(["each", "slices"]))
    n = draw(st.sampled_from([2, 4])) if mode == "slices" else 1
    return ("map", mode, n, draw(st.booleans()), draw(bodies))


steps = st.one_of(
    st.tuples(st.sampled_from(["through", "also"]), bodies),
    st.tuples(st.just("split"), st.lists(modules, min_size=2, max_size=3).map(tuple), merges),
    loops(),
    gates(),
    switches(),
    maps(),
    st.tuples(st.just("state"), inits),
    st.tuples(st.just("ref"), st.sampled_from(["earlier", "previous call"])),
)


@st.composite
def descriptions(draw: st.DrawFn) -> Desc:
    """``(inputs, reads, steps)``: input names, which input each reading step uses, steps."""
    n_inputs = draw(st.integers(0, 2))
    names = ("a", "b")[:n_inputs]
    reads = tuple(draw(st.lists(st.sampled_from(names), max_size=2))) if names else ()
    return (names, reads, tuple(draw(st.lists(steps, min_size=1, max_size=4))))


# ------------------------------------------------------------------ building


def module(m: Desc) -> Any:
    kind = m[0]
    if kind == "linear":
        return nn.Linear(D, D)
    if kind == "act":
        return ACTIVATIONS[m[1]]()
    if kind == "fn":
        return FUNCTIONS[m[1]]
    if kind == "dropout":
        return nn.Dropout(m[1])
    if kind == "scale":
        return functools.partial(scale, factor=m[1])
    if kind == "flow":
        return add_steps(fl.Flow(nn.Identity()), m[1], prefix="inner").build()
    raise AssertionError(m)


def halt(h: Desc) -> Any:
    if h[0] == "threshold":
        return fl.ThresholdHalt(h[1])
    if h[0] == "learned":
        return fl.LearnedHalt(D)
    return HALT_FUNCTIONS[h[1]]


def router(r: Desc, n: int) -> nn.Module:
    if r[0] == "softmax":
        return fl.SoftmaxRouter(D, n)
    if r[0] == "sigmoid":
        return fl.SigmoidRouter(D, n)
    return fl.TopKRouter(D, n, k=r[1], renormalize=r[2])


def init(i: Desc | None) -> Any:
    if i is None:
        return None
    if i[0] == "shape":
        return (i[1],)
    if i[0] == "tensor":
        return torch.zeros(i[1], D)
    if i[0] == "param":
        return nn.Parameter(torch.zeros(i[1], D))
    return INIT_FUNCTIONS[i[1]]


def merge(m: Desc) -> nn.Module:
    if m[0] == "add":
        return fl.Add()
    if m[0] == "mean":
        return fl.Mean()
    return fl.Cat(dim=m[1])


def add_steps(flow: fl.Flow, steps: Desc, prefix: str) -> fl.Flow:
    for i, step in enumerate(steps):
        flow = add_step(flow, step, f"{prefix}{i}")
    return flow


def add_step(flow: fl.Flow, step: Desc, tag: str) -> fl.Flow:
    kind = step[0]
    if kind in ("through", "also"):
        out: fl.Flow = getattr(flow, kind)(module(step[1]))
        return out
    if kind == "split":
        return flow.split(*(module(m) for m in step[1])).merge(merge(step[2]))
    if kind == "loop":
        _, body, mode, count, h = step
        loop = flow.loop(module(body))
        if mode == "for":
            return loop.for_(count)
        return getattr(loop, "while_" if mode == "while" else "until")(halt(h), count)  # type: ignore[no-any-return]
    if kind == "gate":
        experts = [module(e) for e in step[2]]
        return flow.gate(router(step[1], len(experts)), *experts)
    if kind == "switch":
        branches = [module(b) for b in step[2]]
        selector = (
            fl.FixedSelector(step[1][1])
            if step[1][0] == "fixed"
            else fl.ArgmaxSelector(D, len(branches))
        )
        return flow.switch(selector, *branches)
    if kind == "map":
        _, mode, n, batched, body = step
        open_map = flow.map(module(body))
        if batched:
            open_map = open_map.batched()
        return open_map.slices(n) if mode == "slices" else open_map.each()
    if kind == "state":
        declared = init(step[1])
        reading = flow.through(Mix(D)).using(tag)
        return reading.tag(tag) if declared is None else reading.tag(tag, init=declared)
    if kind == "ref":
        if step[1] == "earlier":  # a skip: the value before the Linear
            return flow.tag(tag).through(nn.Linear(D, D)).through(Mix(D)).using(tag)
        return flow.through(Mix(D)).using(tag).through(nn.Linear(D, D)).tag(tag)
    raise AssertionError(step)


def build(desc: Desc, prefix: str = "t", label: str | None = None) -> fl.Graph:
    """A fresh graph of `desc`: new modules; tags named ``<prefix><step>``."""
    names, reads, steps = desc
    flow = fl.Flow(nn.Linear(D, D))
    if names:
        flow = flow.input(*names)
    for name in reads:
        flow = flow.through(Mix(D)).using(name)
    flow = add_steps(flow, steps, prefix)
    if label is not None:
        flow = flow.label(label)
    return flow.build()


# ------------------------------------------------------------------ mutations


def _other(values: list[Any], value: Any) -> list[Any]:
    return [v for v in values if v != value]


def module_mutations(m: Desc) -> Iterator[tuple[str, Desc]]:
    kind = m[0]
    if kind == "linear":
        yield "a Linear becomes a Tanh", ("act", "tanh")
    elif kind == "act":
        for name in _other(sorted(ACTIVATIONS), m[1]):
            yield f"activation {m[1]} -> {name}", ("act", name)
        yield f"the module {m[1]} becomes the function", ("fn", m[1])
    elif kind == "fn":
        for name in _other(sorted(FUNCTIONS), m[1]):
            yield f"function {m[1]} -> {name}", ("fn", name)
    elif kind == "dropout":
        yield f"dropout p {m[1]} -> {m[1] + 0.25}", ("dropout", m[1] + 0.25)
    elif kind == "scale":
        yield f"partial factor {m[1]} -> {m[1] + 1}", ("scale", m[1] + 1)
    elif kind == "flow":
        for i, (what, step) in _in_list(m[1], inner_step_mutations):
            yield f"nested step {i}: {what}", ("flow", step)


def inner_step_mutations(step: Desc) -> Iterator[tuple[str, Desc]]:
    kind, m = step
    yield (
        f"{kind} -> {'also' if kind == 'through' else 'through'}",
        (
            "also" if kind == "through" else "through",
            m,
        ),
    )
    for what, changed in module_mutations(m):
        yield what, (kind, changed)


def _in_list(items: Desc, mutate: Any) -> Iterator[tuple[int, tuple[str, Desc]]]:
    """Each mutation of each item, as the whole tuple with that item changed."""
    for i, item in enumerate(items):
        for what, changed in mutate(item):
            yield i, (what, (*items[:i], changed, *items[i + 1 :]))


def merge_mutations(m: Desc) -> Iterator[tuple[str, Desc]]:
    for other in [("add",), ("mean",), ("cat", -1), ("cat", 0)]:
        if other != m:
            yield f"merge {m} -> {other}", other


def halt_mutations(h: Desc) -> Iterator[tuple[str, Desc]]:
    if h[0] == "threshold":
        yield "threshold + 1", ("threshold", h[1] + 1)
        yield "threshold halt -> learned halt", ("learned",)
    elif h[0] == "learned":
        yield "learned halt -> threshold halt", ("threshold", 1.0)
    else:
        for name in _other(sorted(HALT_FUNCTIONS), h[1]):
            yield f"halt function {h[1]} -> {name}", ("fn", name)


def router_mutations(r: Desc, n: int) -> Iterator[tuple[str, Desc]]:
    if r[0] != "topk":
        yield f"router {r[0]} -> topk", ("topk", 1, False)
        other = "sigmoid" if r[0] == "softmax" else "softmax"
        yield f"router {r[0]} -> {other}", (other,)
        return
    _, k, renormalize = r
    for other in range(1, n + 1):
        if other != k:
            yield f"k {k} -> {other}", ("topk", other, renormalize and other > 1)
    if k > 1:
        yield f"renormalize {renormalize} -> {not renormalize}", ("topk", k, not renormalize)
    yield "topk -> softmax", ("softmax",)


def init_mutations(i: Desc | None) -> Iterator[tuple[str, Desc | None]]:
    options: list[Desc | None] = [
        None,
        ("shape", 1),
        ("shape", 2),
        ("tensor", 1),
        ("tensor", 2),
        ("param", 1),
        ("fn", "ones"),
        ("fn", "halves"),
    ]
    if i is not None and i[0] != "fn":
        options.append((i[0], i[1] + 1))
    for other in options:
        if other != i:
            yield f"init {i} -> {other}", other


def step_mutations(step: Desc) -> Iterator[tuple[str, Desc]]:
    """Every change of one argument of `step` that changes what it computes."""
    kind = step[0]
    if kind in ("through", "also"):
        other = "also" if kind == "through" else "through"
        yield f"{kind} -> {other} (the residual)", (other, step[1])
        for what, m in body_mutations(step[1]):
            yield what, (kind, m)
    elif kind == "split":
        _, branches, m = step
        for i, (what, changed) in _in_list(branches, module_mutations):
            yield f"branch {i}: {what}", ("split", changed, m)
        yield "one more branch", ("split", (*branches, ("linear",)), m)
        for what, other in merge_mutations(m):
            yield what, ("split", branches, other)
    elif kind == "loop":
        _, body, mode, count, h = step
        yield f"count {count} -> {count + 1}", ("loop", body, mode, count + 1, h)
        for what, changed in body_mutations(body):
            yield f"loop body: {what}", ("loop", changed, mode, count, h)
        if mode == "for":
            yield "for -> while", ("loop", body, "while", count, ("threshold", 1.0))
            yield "for -> until", ("loop", body, "until", count, ("threshold", 1.0))
        else:
            other = "until" if mode == "while" else "while"
            yield f"{mode} -> {other}", ("loop", body, other, count, h)
            yield f"{mode} -> for", ("loop", body, "for", count, None)
            for what, changed_halt in halt_mutations(h):
                yield what, ("loop", body, mode, count, changed_halt)
    elif kind == "gate":
        _, r, experts = step
        for what, changed_router in router_mutations(r, len(experts)):
            yield what, ("gate", changed_router, experts)
        for i, (what, changed) in _in_list(experts, body_mutations):
            yield f"expert {i}: {what}", ("gate", r, changed)
        yield "one more expert", ("gate", r, (*experts, ("linear",)))
    elif kind == "switch":
        _, selector, branches = step
        if selector[0] == "fixed":
            other = (selector[1] + 1) % len(branches)
            yield (
                f"selected branch {selector[1]} -> {other}",
                ("switch", ("fixed", other), branches),
            )
            yield "fixed -> argmax selector", ("switch", ("argmax",), branches)
        else:
            yield "argmax -> fixed selector", ("switch", ("fixed", 0), branches)
        for i, (what, changed) in _in_list(branches, body_mutations):
            yield f"branch {i}: {what}", ("switch", selector, changed)
        yield "one more branch", ("switch", selector, (*branches, ("linear",)))
    elif kind == "map":
        _, mode, n, batched, body = step
        if mode == "each":
            yield "each -> slices(2)", ("map", "slices", 2, batched, body)
        else:
            yield f"slices({n}) -> slices({n + 2})", ("map", mode, n + 2, batched, body)
            yield f"slices({n}) -> each", ("map", "each", 1, batched, body)
        yield f"batched {batched} -> {not batched}", ("map", mode, n, not batched, body)
        for what, changed in body_mutations(body):
            yield f"map body: {what}", ("map", mode, n, batched, changed)
    elif kind == "state":
        for what, changed_init in init_mutations(step[1]):
            yield what, ("state", changed_init)
    elif kind == "ref":
        other = "previous call" if step[1] == "earlier" else "earlier"
        yield f"a reference to the {step[1]} -> the {other}", ("ref", other)
    else:
        raise AssertionError(step)


def body_mutations(body: Desc) -> Iterator[tuple[str, Desc]]:
    yield from module_mutations(body)
    if body[0] != "flow":
        yield "a module -> a nested graph of it", ("flow", (("through", body),))


def mutations(desc: Desc) -> Iterator[tuple[str, Desc]]:
    """Every description that differs from `desc` in one argument, with what changed."""
    names, reads, steps = desc
    for i, (what, changed) in _in_list(steps, step_mutations):
        yield f"step {i}: {what}", (names, reads, changed)
    if names:
        renamed = tuple(f"{n}x" for n in names)
        yield "input names", (renamed, tuple(f"{n}x" for n in reads), steps)
        if len(names) == 2:
            yield "input order", (names[::-1], reads, steps)
        for i, name in enumerate(reads):
            for other in _other(list(names), name):
                changed_reads = (*reads[:i], other, *reads[i + 1 :])
                yield f"read {i}: input {name} -> {other}", (names, changed_reads, steps)
    else:
        yield "an auxiliary input", (("a",), (), steps)
