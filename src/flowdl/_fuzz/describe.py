"""Random valid descriptions: `describe(seed)` draws a `Description` from its seed alone.

Each description belongs to a *category* (a construct it is sure to contain at the
top level, for the report to group by); the rest of the graph is drawn from every
construct, nested a few levels deep. The generator keeps to the documented rules:
decisions taken for the whole batch (`fl.ThresholdHalt`, a selector returning an
``int``) never sit where a subset of the samples runs (a per-sample loop's body, a
per-sample switch's branches, a sparse gate's experts, a map's body), and state
(forward references) stays out of branches, sparse experts and map bodies. Some
descriptions are then made invalid on purpose (`flowdl._fuzz.invalid`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from flowdl._fuzz.invalid import MISTAKES, make_invalid
from flowdl._fuzz.ir import (
    Also,
    AuxInput,
    CallSpec,
    Description,
    Fork,
    Gate,
    GraphSpec,
    Halt,
    Init,
    Leaf,
    Loop,
    Map,
    Merge,
    Module,
    Router,
    Selector,
    Split,
    Step,
    Switch,
    Tag,
    Through,
    defined,
    modules_of,
    refs_of,
    shared_tags,
)

CATEGORIES = (
    "chain",
    "state",
    "inputs",
    "nested",
    "split",
    "loop-for",
    "loop-batch-halt",
    "loop-sample-halt",
    "loop-stateful",
    "gate-dense",
    "gate-sparse",
    "switch-batch",
    "switch-sample",
    "map",
)
"""What a description is sure to contain at its top level."""

INVALID_SHARE = 0.15
"""The share of descriptions made invalid on purpose."""

MAX_DEPTH = 3
"""Graphs nest at most this deep below the top level."""


@dataclass(frozen=True)
class _Where:
    """Where a graph is drawn: how deep, and what it may contain there."""

    depth: int = 0
    rowwise: bool = False  # a subset of the samples may run it: no whole-batch decisions
    state: bool = True  # forward references allowed
    in_loop: bool = False  # inside a loop body: no callable inits

    def inner(self, *, rowwise: bool = False, state: bool = True, loop: bool = False) -> _Where:
        return _Where(
            self.depth + 1, self.rowwise or rowwise, self.state and state, self.in_loop or loop
        )


class _Drawer:
    """Draws one description; all randomness comes from `rng`."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seed = seed
        self.count = 0
        self.budget = 14  # steps left to draw; constructs turn simple when it runs out

    def fresh(self) -> int:
        """A seed for weights, distinct within the description."""
        self.count += 1
        return (self.seed * 7919 + 16 * self.count) % (1 << 62)

    def name(self, prefix: str) -> str:
        self.count += 1
        return f"{prefix}{self.count}"

    # ------------------------------------------------------------ modules

    def leaf(self, din: int, dout: int, arity: int) -> Leaf:
        kinds = ["linear", "tanh", "tanh"] + (["sin"] if din == dout else [])
        kinds += ["stateadd"] if arity and din == dout else []
        kind = self.rng.choice(kinds)
        named = arity > 0 and kind != "stateadd" and self.rng.random() < 0.25
        return Leaf(kind, self.fresh(), din, dout, arity, named)

    def module(
        self, where: _Where, dim: int, kinds: tuple[bool, ...], *, stateful: bool = False
    ) -> Module:
        """A leaf or a nested graph reading refs of `kinds` (per sample or shared)."""
        deep = where.depth > MAX_DEPTH or self.budget <= 0
        if stateful and not deep:
            return self.graph(where, dim, kinds, force="state")
        if deep or self.rng.random() < 0.65:
            return self.leaf(dim, dim, len(kinds))
        return self.graph(where, dim, kinds)

    def graph(
        self,
        where: _Where,
        dim: int,
        kinds: tuple[bool, ...],
        *,
        force: str | None = None,
        inputs: tuple[AuxInput, ...] | None = None,
    ) -> GraphSpec:
        """A graph at `where` (nested when ``where.depth > 0``), with an input per kind
        (declared ``per_sample`` or not), or the top level's `inputs`."""
        uid = "top" if where.depth == 0 else self.name("n")
        if inputs is None:
            inputs = tuple(AuxInput(f"{uid}in{k}", per_sample=p) for k, p in enumerate(kinds))
        shared_inputs = sum(not i.per_sample for i in inputs)
        n = self.rng.randint(1, 4 if where.depth == 0 else 3)
        plan = [self.kind(where) for _ in range(n)]
        if force is not None:
            plan[self.rng.randrange(n)] = force
        steps: list[Step] = []
        wanted: set[int] = set()  # positions of steps that prefer forward references
        for kind in plan:
            self.budget -= 1
            if kind == "state":
                wanted.add(len(steps))
            steps.append(self.step(kind, where, dim, shared_inputs))
            if kind == "state" or self.rng.random() < 0.4:
                steps.append(Tag(self.name(f"{uid}t")))
        steps = self.wire(steps, inputs, where, dim, wanted)
        steps = self.initialise(steps, where, dim)
        prebuilt = where.depth == 0 or self.rng.random() < 0.8
        return GraphSpec(uid, dim, self.leaf(dim, dim, 0), inputs, tuple(steps), prebuilt)

    # ------------------------------------------------------------ steps

    def kind(self, where: _Where) -> str:
        if self.budget <= 0 or where.depth >= MAX_DEPTH:
            return self.rng.choice(["through", "also", "fork"])
        kinds = ["through", "also", "fork", "split", "loop", "gate", "switch", "map"]
        weights = [3, 2, 1, 2, 3, 2, 2, 1]
        if where.state:
            kinds.append("state")
            weights.append(2)
        return self.rng.choices(kinds, weights)[0]

    def arity(self) -> int:
        return self.rng.choices([0, 1, 2, 3], [10, 6, 3, 1])[0]

    def step(self, kind: str, where: _Where, dim: int, shared_inputs: int) -> Step:
        """A step of `kind`; the tags it reads are placeholders until `wire`: ``"?"``
        for a per-sample value, ``"?s"`` for a shared one (an undeclared input, a
        batch statistic tagged ``shared=True``; only batch-level code makes those)."""
        rng, r = self.rng, self.arity()
        if kind == "state":
            r = max(r, 1)
        most = r if not where.rowwise else shared_inputs
        shared = [rng.random() < 0.25 for _ in range(r)]
        while sum(shared) > most:
            shared.remove(True)
            shared.append(False)
        if kind == "state":  # the first reads state: per sample
            shared = [False, *shared[1:]] if shared[0] else shared
        r_kinds = tuple(not s for s in shared)
        refs = tuple("?" if k else "?s" for k in r_kinds)
        sub = where.inner()
        if kind == "nested":
            return Through(self.graph(sub, dim, r_kinds), refs)
        if kind in ("through", "state"):
            return Through(self.module(sub, dim, r_kinds), refs)
        if kind == "also":
            return Also(self.module(sub, dim, r_kinds), refs)
        if kind == "fork":
            return Fork(self.module(sub, dim, r_kinds), self.name("f"), refs)
        if kind == "split":
            k = rng.randint(2, 3)
            branches = tuple(self.module(sub, dim, r_kinds) for _ in range(k))
            merge = Merge(rng.choice(["add", "mean", "product", "cat"]))
            if merge.kind == "cat":
                merge = Merge("cat", self.leaf(k * dim, dim, 0))
            group = self.name("g") if rng.random() < 0.3 else None
            return Split(branches, merge, refs, group)
        if kind.startswith("loop"):
            return replace(self.loop(kind, where, dim, r_kinds), refs=refs)
        if kind.startswith("gate"):
            return replace(self.gate(kind, where, dim), refs=refs)
        if kind.startswith("switch"):
            return replace(self.switch(kind, where, dim), refs=refs)
        return self.map(where, dim)

    def loop(self, kind: str, where: _Where, dim: int, kinds: tuple[bool, ...]) -> Loop:
        rng = self.rng
        flavour = kind.removeprefix("loop-") if kind != "loop" else ""
        per_batch = ["threshold", "mean"] if not where.rowwise else []
        per_sample = ["learned", "rowsum", "rowsum1"]
        stateful = flavour == "stateful"
        if flavour == "for" or (flavour in ("", "stateful") and rng.random() < 0.3):
            body = self.module(where.inner(loop=True), dim, kinds, stateful=stateful)
            return Loop(body, "for", rng.randint(1, 3))
        if flavour == "batch-halt" and per_batch:
            halt_kind = rng.choice(per_batch)
        elif flavour == "sample-halt":
            halt_kind = rng.choice(per_sample)
        else:
            halt_kind = rng.choice(per_batch + per_sample)
        level = {"threshold": rng.uniform(0.0, 1.2), "mean": rng.uniform(-0.3, 0.3)}.get(
            halt_kind, rng.uniform(-0.4, 0.4) * dim
        )
        halt = Halt(halt_kind, self.fresh(), round(level, 3))
        inner = where.inner(rowwise=halt.per_sample, loop=True)
        body = self.module(inner, dim, kinds, stateful=stateful)
        mode = rng.choice(["while", "until"])
        return Loop(body, mode, rng.randint(1, 4), halt)

    def gate(self, kind: str, where: _Where, dim: int) -> Gate:
        rng = self.rng
        n = rng.randint(2, 3)
        sparse = kind == "gate-sparse" or (kind == "gate" and rng.random() < 0.5)
        if sparse:
            k = rng.randint(1, n)
            renormalize = rng.choice([None, False] + ([True] if k > 1 else []))
            router = Router("topk", self.fresh(), n, k, renormalize)
        else:
            router = Router(rng.choice(["softmax", "softmax", "sigmoid"]), self.fresh(), n)
        inner = where.inner(rowwise=sparse, state=not sparse)
        return Gate(router, tuple(self.module(inner, dim, ()) for _ in range(n)))

    def switch(self, kind: str, where: _Where, dim: int) -> Switch:
        rng = self.rng
        n = rng.randint(2, 3)
        if kind == "switch-sample" or (kind == "switch" and rng.random() < 0.6):
            selector = Selector(rng.choice(["argmax", "rows"]), self.fresh(), n)
        elif where.rowwise or rng.random() < 0.4:
            selector = Selector("fixed", 0, n, rng.randrange(n))
        else:
            selector = Selector("batch", 0, n)
        inner = where.inner(rowwise=selector.per_sample, state=False)
        return Switch(selector, tuple(self.module(inner, dim, ()) for _ in range(n)))

    def map(self, where: _Where, dim: int) -> Map:
        rng = self.rng
        inner = where.inner(rowwise=True, state=False)
        divisors = [n for n in range(2, dim + 1) if dim % n == 0]
        mode = rng.choice(["each", "over", "slices"] if divisors else ["each", "over"])
        n = rng.choice(divisors) if mode == "slices" else 0
        width = dim // n if n else dim
        tag = "?" if mode == "over" else ""
        return Map(self.module(inner, width, ()), mode, n, tag, batched=rng.random() < 0.4)

    # ------------------------------------------------------------ references

    def wire(
        self,
        steps: list[Step],
        inputs: tuple[AuxInput, ...],
        where: _Where,
        dim: int,
        wanted: set[int],
    ) -> list[Step]:
        """Replace each placeholder by a tag of its kind known there: per sample (an
        input declared so, a tag defined earlier or, when state is allowed, later), or
        shared (an undeclared input, an earlier batch statistic). Where too few are
        known, tag the stream (or fork a batch statistic) first. Every input of a
        nested graph gets read."""
        unread = [i.name for i in inputs] if where.depth else []
        out: list[Step] = []
        for index, step in enumerate(steps):
            slots = refs_of(step)
            if not any(s.startswith("?") for s in slots):
                out.append(step)
                continue
            chosen: list[str] = []
            for slot in slots:
                pool = self.candidates(step, slot, out, steps[index:], inputs, where)
                pool = [t for t in pool if t not in chosen]
                fresh = [t for t in pool if t in unread]
                if not pool:  # make one, just before the step
                    out.append(self.source(slot, dim))
                    pool = defined(out[-1:])
                elif fresh:
                    pool = fresh
                elif index in wanted and slot == "?" and where.state:
                    pool = [t for t in pool if t in shared_free(steps[index:])] or pool
                else:
                    pool = [self.rng.choice(pool)]
                chosen.append(pool[0])
            unread = [u for u in unread if u not in chosen]
            out.append(_with_refs(step, tuple(chosen)))
        out.extend(Through(self.leaf(dim, dim, 1), (name,)) for name in unread)
        return out

    def candidates(
        self,
        step: Step,
        slot: str,
        done: list[Step],
        rest: list[Step],
        inputs: tuple[AuxInput, ...],
        where: _Where,
    ) -> list[str]:
        """The tags a placeholder may read: earlier ones, then later ones (state)."""
        shared = shared_tags(done)
        if isinstance(step, Map):  # .over(tag): rows of an earlier per-sample tag
            return [t for t in defined(done) if t not in shared]
        if slot == "?s":
            return [i.name for i in inputs if not i.per_sample] + sorted(shared)
        earlier = [i.name for i in inputs if i.per_sample] + [
            t for t in defined(done) if t not in shared
        ]
        later = shared_free(rest) if where.state else []
        return earlier + later

    def source(self, slot: str, dim: int) -> Step:
        """A new tag to read: the stream, or (shared) a batch statistic of it."""
        if slot == "?s":
            return Fork(Leaf("batchmean", 0, dim, dim), self.name("s"), shared=True)
        return Tag(self.name("t"))

    def initialise(self, steps: list[Step], where: _Where, dim: int) -> list[Step]:
        """Give some state tags a first value (`Init`)."""
        kinds = ["shape", "vector", "row", "buffer"] + ([] if where.in_loop else ["callable"])
        out = list(steps)
        for index, step in enumerate(out):
            if not isinstance(step, Tag) or self.rng.random() < 0.5:
                continue
            readers = [s for s in out[:index] if step.name in refs_of(s) and not isinstance(s, Map)]
            if readers:
                # A nested graph's input declared per_sample must have a row per sample
                # (or one row for all): a [d] vector there is refused, by the rule.
                into_rows = any(_feeds_per_sample_input(s, step.name) for s in readers)
                allowed = [k for k in kinds if not (into_rows and k == "vector")]
                out[index] = Tag(step.name, Init(self.rng.choice(allowed), self.fresh()))
        return out


def _feeds_per_sample_input(step: Step, tag: str) -> bool:
    """Whether `step` may pass `tag` to an input declared per_sample of a nested graph
    (as a node, a loop body, a branch or an expert)."""
    if tag not in refs_of(step):
        return False
    return any(
        isinstance(module, GraphSpec) and any(aux.per_sample for aux in module.inputs)
        for module in modules_of(step)
    )


def describe(seed: int) -> Description:
    """The description drawn from `seed` (its category, graph, calls, and whether and
    how it is made invalid), the same on every machine.

    Example:
        >>> describe(7) == describe(7)
        True
        >>> describe(7).category in CATEGORIES
        True
    """
    drawer = _Drawer(seed)
    rng = drawer.rng
    category = rng.choice(CATEGORIES)
    dim = rng.choice([2, 3, 4])
    shapes = ["batched", "vector", "row"]
    n_aux = rng.randint(1, 2) if category == "inputs" else int(rng.random() < 0.25)
    shaped = [rng.choice(shapes) for _ in range(n_aux)]  # [B, d] inputs are per sample
    inputs = tuple(AuxInput(f"aux{k}", s, s == "batched") for k, s in enumerate(shaped))
    force = rng.choice(["through", "also", "fork"]) if category == "chain" else category
    if category == "nested":
        drawer.budget += 4
    graph = drawer.graph(_Where(), dim, (), force=force, inputs=inputs)
    calls = []
    batch = dim if rng.random() < 0.35 else rng.randint(1, 4)
    for index in range(rng.randint(2, 4)):
        reset = index > 0 and rng.random() < 0.25
        if reset and rng.random() < 0.5:
            batch = rng.randint(1, 4)
        calls.append(CallSpec(batch, reset))
    description = Description(seed, category, graph, tuple(calls))
    if rng.random() < INVALID_SHARE:
        description = make_invalid(description, rng.choice(MISTAKES), rng)
    return description


def shared_free(steps: list[Step]) -> list[str]:
    """The per-sample tags `steps` define (not the batch statistics tagged shared)."""
    shared = shared_tags(steps)
    return [t for t in defined(steps) if t not in shared]


def _with_refs(step: Step, refs: tuple[str, ...]) -> Step:
    """`step` reading `refs` (``.over(refs[0])`` for a map)."""
    if isinstance(step, Map):
        return replace(step, tag=refs[0])
    if isinstance(step, Tag):
        return step
    return replace(step, refs=refs)
