"""A `Flow` is a value: every builder call returns a new flow sharing the prefix and
leaves the one it is called on unchanged, so one trunk can be extended twice.

Each case extends one trunk two ways (both extensions made before either is built) and
checks both graphs against hand-written torch, outputs and gradients in float64; the
trunk's modules are the same objects in both graphs, and the trunk is unchanged.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl
from tests.support import Mix, assert_same_as_oracle, linear64, rand64

D, B = 4, 3


class Mods:
    """Fresh float64 modules for one case, shared by its flows and its oracles."""

    def __init__(self) -> None:
        self.a, self.b, self.c, self.h1, self.h2 = (linear64(D, D) for _ in range(5))
        self.m1, self.m2 = Mix(D).double(), Mix(D).double()
        self.router = fl.SoftmaxRouter(D, 2).double()
        self.half = linear64(D // 2, D // 2)


def rows(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    return torch.cat([fn(x[i : i + 1]) for i in range(x.shape[0])])


def res(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    return x + fn(x)


def scale(r: Tensor) -> Tensor:
    """Depends on the whole batch it is given: tells a batched map from a row-wise one."""
    return r * r.sum()


def cond(s: Tensor) -> Tensor:
    return s.detach().abs().sum() - 6.0


def per_sample(x: Tensor) -> Tensor:
    return (x[:, 0] > 0).long()


def gated(m: Mods, y: Tensor, e1: nn.Module, e2: nn.Module) -> Tensor:
    w = m.router(y)
    return w[:, 0:1] * e1(y) + w[:, 1:2] * e2(y)


def while_(body: Callable[[Tensor], Tensor], n: int, h: Tensor) -> Tensor:
    for _ in range(n):
        if cond(h) > 0:
            break
        h = body(h)
    return h


def until(body: Callable[[Tensor], Tensor], n: int, h: Tensor) -> Tensor:
    for i in range(n):
        h = body(h)
        if i + 1 < n and cond(h) > 0:
            break
    return h


def twice(fn: Callable[[Tensor], Tensor], h: Tensor) -> Tensor:
    return fn(fn(h))


Extend = Callable[[Any, Mods], Any]
Oracle = Callable[..., Tensor]


@dataclass
class Case:
    """`trunk` (a flow or an open loop/map), extended by `one` and by `two`."""

    trunk: Callable[[Mods], Any]
    one: Extend
    two: Extend
    oracle_one: Oracle
    oracle_two: Oracle
    aux: tuple[int, int] = (0, 0)
    sparse: bool = False
    check: Callable[[fl.Graph, fl.Graph, Any], None] | None = None


def _sub(m: Mods) -> fl.Flow:
    return fl.Flow(m.c).through(m.h1)


def _check_tags(g1: fl.Graph, g2: fl.Graph, *tags: tuple[str, ...]) -> None:
    assert (g1.tags, g2.tags) == tags


def _check_labels(g1: fl.Graph, g2: fl.Graph, trunk: Any) -> None:
    assert (g1.label, g2.label, trunk.build().label) == ("one", "two", None)


def _check_nested_shared(g1: fl.Graph, g2: fl.Graph, trunk: Any) -> None:
    nested = [[c for c in g.children() if isinstance(c, fl.Graph)] for g in (g1, g2)]
    assert [len(n) for n in nested] == [1, 2]
    assert nested[0][0] is nested[1][0]  # built once, at the trunk's call
    assert nested[1][1] is not nested[1][0]  # the second .through(sub) builds it again


CASES: dict[str, Case] = {
    "through": Case(
        lambda m: fl.Flow(m.a).through(m.b),
        lambda t, m: t.through(m.h1),
        lambda t, m: t.through(m.h2),
        lambda m, x: m.h1(m.b(m.a(x))),
        lambda m, x: m.h2(m.b(m.a(x))),
    ),
    "also": Case(
        lambda m: fl.Flow(m.a).also(m.b),
        lambda t, m: t.through(m.h1),
        lambda t, m: t.also(m.h2),
        lambda m, x: m.h1(res(m.b, m.a(x))),
        lambda m, x: res(m.h2, res(m.b, m.a(x))),
    ),
    "fork": Case(  # the fork's node gets a reference in one extension only
        lambda m: fl.Flow(m.a).tag("t").fork(m.m1),
        lambda t, m: t.tag("s").through(m.m2).using("s"),
        lambda t, m: t.using("t").tag("s").through(m.m2).using("s"),
        lambda m, x: m.m2(m.a(x), m.m1(m.a(x))),
        lambda m, x: m.m2(m.a(x), m.m1(m.a(x), m.a(x))),
    ),
    "tag": Case(
        lambda m: fl.Flow(m.a).tag("t"),
        lambda t, m: t.through(m.b).through(m.m1).using("t"),
        lambda t, m: t.through(m.h2).tag("u").through(m.m2).using("t", "u"),
        lambda m, x: m.m1(m.b(m.a(x)), m.a(x)),
        lambda m, x: m.m2(m.h2(m.a(x)), m.a(x), m.h2(m.a(x))),
        check=lambda g1, g2, t: _check_tags(g1, g2, ("t",), ("t", "u")),
    ),
    "using": Case(  # one extension adds a second reference (state) to the trunk's last node
        lambda m: fl.Flow(m.a).tag("t").through(m.m1).using("t"),
        lambda t, m: t.using("later").through(m.b).tag("later"),
        lambda t, m: t.through(m.h2),
        lambda m, x: m.b(m.m1(m.a(x), m.a(x), torch.zeros_like(m.a(x)))),
        lambda m, x: m.h2(m.m1(m.a(x), m.a(x))),
    ),
    "split": Case(  # an open split, its branches fed a reference in one extension only
        lambda m: fl.Flow(m.a).tag("t").split(m.m1, m.m2),
        lambda t, m: t.using("t").merge(fl.Add()),
        lambda t, m: t.merge(fl.Mean()),
        lambda m, x: m.m1(m.a(x), m.a(x)) + m.m2(m.a(x), m.a(x)),
        lambda m, x: (m.m1(m.a(x)) + m.m2(m.a(x))) / 2,
    ),
    "merge": Case(
        lambda m: fl.Flow(m.a).tag("t").split(m.b, m.c).merge(m.m1),
        lambda t, m: t.using("t"),
        lambda t, m: t.through(m.h2),
        lambda m, x: m.m1(m.b(m.a(x)), m.c(m.a(x)), m.a(x)),
        lambda m, x: m.h2(m.m1(m.b(m.a(x)), m.c(m.a(x)))),
    ),
    "tag_group": Case(
        lambda m: fl.Flow(m.a).split(m.b, m.c).tag_group("g"),
        lambda t, m: t.merge(fl.Add()).through(m.m1).using("g_0"),
        lambda t, m: t.merge(fl.Mean()).through(m.m2).using("g_1"),
        lambda m, x: m.m1(m.b(m.a(x)) + m.c(m.a(x)), m.b(m.a(x))),
        lambda m, x: m.m2((m.b(m.a(x)) + m.c(m.a(x))) / 2, m.c(m.a(x))),
    ),
    "input": Case(
        lambda m: fl.Flow(m.a).input("k"),
        lambda t, m: t.through(m.m1).using("k"),
        lambda t, m: t.input("v").through(m.m2).using("v", "k"),
        lambda m, x, k: m.m1(m.a(x), k),
        lambda m, x, k, v: m.m2(m.a(x), v, k),
        aux=(1, 2),
    ),
    "label": Case(
        lambda m: fl.Flow(m.a).through(m.b),
        lambda t, m: t.label("one"),
        lambda t, m: t.label("two"),
        lambda m, x: m.b(m.a(x)),
        lambda m, x: m.b(m.a(x)),
        check=_check_labels,
    ),
    "loop": Case(  # an open loop, finished two ways
        lambda m: fl.Flow(m.a).loop(m.b),
        lambda t, m: t.for_(2),
        lambda t, m: t.until(cond, 3),
        lambda m, x: twice(m.b, m.a(x)),
        lambda m, x: until(m.b, 3, m.a(x)),
    ),
    "for_": Case(
        lambda m: fl.Flow(m.a).loop(m.b).for_(2),
        lambda t, m: t.through(m.h1),
        lambda t, m: t.loop(m.h2).while_(cond, 3),
        lambda m, x: m.h1(twice(m.b, m.a(x))),
        lambda m, x: while_(m.h2, 3, twice(m.b, m.a(x))),
    ),
    "while_": Case(
        lambda m: fl.Flow(m.a).loop(m.b).while_(cond, 3),
        lambda t, m: t.through(m.h1),
        lambda t, m: t.through(m.h2),
        lambda m, x: m.h1(while_(m.b, 3, m.a(x))),
        lambda m, x: m.h2(while_(m.b, 3, m.a(x))),
    ),
    "until": Case(  # the loop's body is fed a reference in one extension only
        lambda m: fl.Flow(m.a).tag("t").loop(m.m1).until(cond, 3),
        lambda t, m: t.using("t"),
        lambda t, m: t.through(m.h2),
        lambda m, x: until(lambda h: m.m1(h, m.a(x)), 3, m.a(x)),
        lambda m, x: m.h2(until(m.m1, 3, m.a(x))),
    ),
    "gate": Case(
        lambda m: fl.Flow(m.a).gate(m.router, m.b, m.c),
        lambda t, m: t.through(m.h1),
        lambda t, m: t.gate(m.router, m.h1, m.h2),
        lambda m, x: m.h1(gated(m, m.a(x), m.b, m.c)),
        lambda m, x: gated(m, gated(m, m.a(x), m.b, m.c), m.h1, m.h2),
    ),
    "switch": Case(
        lambda m: fl.Flow(m.a).switch(fl.FixedSelector(1), m.b, m.c),
        lambda t, m: t.through(m.h1),
        lambda t, m: t.switch(per_sample, m.h1, m.h2),
        lambda m, x: m.h1(m.c(m.a(x))),
        lambda m, x: rows(lambda r: (m.h2 if r[0, 0] > 0 else m.h1)(r), m.c(m.a(x))),
        sparse=True,
    ),
    "map": Case(  # an open map: row by row in one extension, batched in the other
        lambda m: fl.Flow(m.a).map(scale),
        lambda t, m: t.each(),
        lambda t, m: t.batched().each(),
        lambda m, x: rows(scale, m.a(x)),
        lambda m, x: scale(m.a(x)),
    ),
    "batched": Case(
        lambda m: fl.Flow(m.a).tag("t").through(m.b).map(scale).batched(),
        lambda t, m: t.each(),
        lambda t, m: t.over("t"),
        lambda m, x: scale(m.b(m.a(x))),
        lambda m, x: scale(m.a(x)),
    ),
    "each": Case(
        lambda m: fl.Flow(m.a).map(scale).each(),
        lambda t, m: t.through(m.h1),
        lambda t, m: t.map(m.half).slices(2),
        lambda m, x: m.h1(rows(scale, m.a(x))),
        lambda m, x: m.half(rows(scale, m.a(x)).reshape(-1, D // 2)).reshape(-1, D),
    ),
    "over": Case(
        lambda m: fl.Flow(m.a).tag("t").through(m.b).map(scale).over("t"),
        lambda t, m: t.through(m.h1),
        lambda t, m: t.map(scale).over("t"),
        lambda m, x: m.h1(rows(scale, m.a(x))),
        lambda m, x: rows(scale, m.a(x)),
    ),
    "slices": Case(
        lambda m: fl.Flow(m.a).map(m.half).slices(2),
        lambda t, m: t.through(m.h1),
        lambda t, m: t.through(m.h2),
        lambda m, x: m.h1(m.half(m.a(x).reshape(-1, D // 2)).reshape(-1, D)),
        lambda m, x: m.h2(m.half(m.a(x).reshape(-1, D // 2)).reshape(-1, D)),
    ),
    "nested flow": Case(
        lambda m: fl.Flow(m.a).through(_sub(m)),
        lambda t, m: t.through(m.h2),
        lambda t, m: t.through(_sub(m)),
        lambda m, x: m.h2(m.h1(m.c(m.a(x)))),
        lambda m, x: m.h1(m.c(m.h1(m.c(m.a(x))))),
        check=_check_nested_shared,
    ),
    "nested open loop": Case(  # a loop whose body is a flow with a loop of its own
        lambda m: fl.Flow(m.a).loop(fl.Flow(m.b).loop(m.c).for_(2)),
        lambda t, m: t.for_(2),
        lambda t, m: t.for_(1),
        lambda m, x: twice(lambda h: twice(m.c, m.b(h)), m.a(x)),
        lambda m, x: twice(m.c, m.b(m.a(x))),
    ),
}


def _snapshot(trunk: Any) -> list[tuple[Any, ...]]:
    flow = getattr(trunk, "_flow", trunk)  # an open loop or map holds its flow
    return [
        (n.id, n.module, tuple(n.inputs), tuple(n.ref_names), tuple(n.tags)) for n in flow._nodes
    ] + [c.text for c in flow._calls]


def _trunk_params(trunk: Any) -> set[int]:
    flow = getattr(trunk, "_flow", trunk)
    modules = [n.module for n in flow._nodes if isinstance(n.module, nn.Module)]
    return {id(p) for module in modules for p in module.parameters()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_one_trunk_extended_twice_gives_two_independent_graphs(name: str) -> None:
    case, m = CASES[name], Mods()
    trunk = case.trunk(m)
    before = _snapshot(trunk)
    one, two = case.one(trunk, m), case.two(trunk, m)
    g1, g2 = one.build(), two.build()
    assert _snapshot(trunk) == before
    for graph, oracle, n_aux in zip(
        (g1, g2), (case.oracle_one, case.oracle_two), case.aux, strict=True
    ):
        inputs = [rand64(B, D) for _ in range(1 + n_aux)]
        assert_same_as_oracle(
            graph,
            lambda *xs, oracle=oracle: oracle(m, *xs),
            *inputs,
            none_is_zero=case.sparse,
        )
        shared = {id(p) for p in graph.parameters()}
        assert _trunk_params(trunk) <= shared, "the trunk's modules are shared, never copied"
    if case.check is not None:
        case.check(g1, g2, trunk)


def test_the_cases_cover_every_builder_call() -> None:
    public = {n for n in dir(fl.Flow) if not n.startswith("_")} - {"build"}
    for builder in (fl.LoopBuilder, fl.MapBuilder):
        public |= {n for n in vars(builder) if not n.startswith("_")}
    assert public <= set(CASES), f"no case for {sorted(public - set(CASES))}"


def test_training_one_graph_trains_the_trunk_of_the_other() -> None:
    m = Mods()
    trunk = fl.Flow(m.a).through(nn.Tanh())
    g1, g2 = trunk.through(m.h1).build(), trunk.through(m.h2).build()
    x = rand64(B, D, grad=False)
    before = g2(x).detach()
    g1(x).sum().backward()
    torch.optim.SGD(g1.parameters(), lr=0.5).step()
    assert not torch.allclose(g2(x), before)  # m.a moved: g2 sees it
    assert m.h2.weight.grad is None  # g2's own head was not part of g1


def test_the_trunk_builds_alone_after_being_extended() -> None:
    m = Mods()
    trunk = fl.Flow(m.a).tag("t").through(m.b)
    extended = trunk.through(m.m1).using("t").tag("u")
    x = rand64(B, D)
    assert_same_as_oracle(trunk.build(), lambda x: m.b(m.a(x)), x)
    assert_same_as_oracle(extended.build(), lambda x: m.m1(m.b(m.a(x)), m.a(x)), x)
    assert trunk.build().tags == ("t",)
    assert repr(trunk) == "<unbuilt fl.Flow({}).tag('t').through({})>".format(
        *(repr(mod) for mod in (m.a, m.b))
    )
