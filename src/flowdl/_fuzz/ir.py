"""The fuzzer's description of a graph: plain, frozen data that both sides read.

A `Description` says which graph to build (`GraphSpec`: an entry module, auxiliary
inputs, then `Step`s) and how to call it (`CallSpec`s). Module weights are not stored:
every parametrised part carries a ``seed`` from which `flowdl._fuzz.leaves` draws its
weights, so a description is small, printable and rebuilt exactly from its seed.
The builder (`flowdl._fuzz.build`) turns it into an `fl.Graph`; the interpreter
(`flowdl._fuzz.interpret`) computes what that graph must return, with plain torch.

A description may be deliberately *invalid* (``Description.invalid`` names the
mistake): building it must raise `fl.BuildError`, and it is never interpreted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TypeAlias

# ------------------------------------------------------------------ modules


@dataclass(frozen=True)
class Leaf:
    """A user module (see `flowdl._fuzz.leaves`) taking the stream and ``arity`` refs.

    Attributes:
        kind: ``"linear"``, ``"tanh"``, ``"sin"`` (parameter-free unless it takes
            refs; a plain callable when it takes none), ``"batchmean"`` (the mean
            over the batch, ``[dim]``) or ``"stateadd"`` (`fl.StateAdd`).
        seed: the seed of its weights.
        din: features of the stream it reads.
        dout: features of what it returns.
        arity: how many references its ``forward`` takes after the stream.
        named: it takes them by name instead: ``forward_named(x, refs)`` and
            ``ref_names()`` (the tags the step reads, in order).
    """

    kind: str
    seed: int
    din: int
    dout: int
    arity: int = 0
    named: bool = False


@dataclass(frozen=True)
class Init:
    """The first value of a state tag: ``tag(name, init=...)``.

    Attributes:
        kind: ``"shape"`` (zeros ``[B, dim]``), ``"vector"`` (a learned ``[dim]``
            parameter), ``"row"`` (a learned ``[1, dim]`` parameter), ``"buffer"`` (a
            ``[1, dim]`` tensor, not learned) or ``"callable"`` (``0.5 * tanh(stream)``).
        seed: the seed of the parameter.
    """

    kind: str
    seed: int


@dataclass(frozen=True)
class Halt:
    """A loop's halt condition (positive halts).

    Attributes:
        kind: ``"threshold"`` (`fl.ThresholdHalt`, the batch), ``"mean"`` (a scalar,
            the batch), ``"learned"`` (`fl.LearnedHalt`, ``[B, 1]``), ``"rowsum"``
            (``[B]``) or ``"rowsum1"`` (``[B, 1]``).
        seed: the seed of `fl.LearnedHalt`'s weights.
        level: the threshold.
    """

    kind: str
    seed: int
    level: float

    @property
    def per_sample(self) -> bool:
        """Whether the condition returns one value per sample."""
        return self.kind in ("learned", "rowsum", "rowsum1")


@dataclass(frozen=True)
class Router:
    """A gate's router: ``"softmax"`` (`fl.SoftmaxRouter`), ``"sigmoid"``
    (`fl.SigmoidRouter`) or ``"topk"`` (`fl.TopKRouter(in_dim, n, k, renormalize=...)`)."""

    kind: str
    seed: int
    n: int
    k: int = 0
    renormalize: bool | None = None


@dataclass(frozen=True)
class Selector:
    """A switch's selector.

    Attributes:
        kind: ``"fixed"`` (`fl.FixedSelector`), ``"argmax"`` (`fl.ArgmaxSelector`, per
            sample), ``"rows"`` (per sample, from each row's sum) or ``"batch"`` (an
            ``int`` from the batch mean).
        seed: the seed of `fl.ArgmaxSelector`'s weights.
        n: how many branches it chooses among.
        index: `fl.FixedSelector`'s branch.
    """

    kind: str
    seed: int
    n: int
    index: int = 0

    @property
    def per_sample(self) -> bool:
        """Whether the selector returns one index per sample."""
        return self.kind in ("argmax", "rows")


@dataclass(frozen=True)
class Merge:
    """How a split's branches combine: ``"add"``, ``"mean"``, ``"product"`` (a lambda)
    or ``"cat"`` (`fl.Cat(dim=-1)` followed by the projection leaf ``project``)."""

    kind: str
    project: Leaf | None = None


@dataclass(frozen=True)
class AuxInput:
    """An auxiliary input, declared ``.input(name, per_sample=per_sample)``.

    Attributes:
        name: its name (a tag).
        shape: at the top level, what the call passes: ``"batched"`` ``[B, dim]``,
            ``"vector"`` ``[dim]`` or ``"row"`` ``[1, dim]``.
        per_sample: whether its rows are the samples (else it is shared by all).
    """

    name: str
    shape: str = "batched"
    per_sample: bool = False


# ------------------------------------------------------------------ steps


@dataclass(frozen=True)
class Through:
    """``.through(module).using(*refs)``."""

    module: Module
    refs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Also:
    """``.also(module).using(*refs)``: ``x + module(x, *refs)``."""

    module: Module
    refs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Fork:
    """``.fork(module).using(*refs).tag(tag)``: a side output named `tag`, tagged
    ``shared=True`` when `shared` (a batch statistic, the same for every sample)."""

    module: Module
    tag: str
    refs: tuple[str, ...] = ()
    shared: bool = False


@dataclass(frozen=True)
class Split:
    """``.split(*branches).using(*refs)[.tag_group(group)].merge(...)``; no merge when
    `merge` is ``None`` (invalid)."""

    branches: tuple[Module, ...]
    merge: Merge | None
    refs: tuple[str, ...] = ()
    group: str | None = None


@dataclass(frozen=True)
class Loop:
    """``.loop(body).<mode>(...).using(*refs)``.

    Attributes:
        mode: ``"for"``, ``"while"``, ``"until"``, or ``"open"`` (no terminator: invalid).
        count: ``n`` of ``for_`` or ``max_iter`` of the others.
        halt: the condition of ``while_`` and ``until``.
    """

    body: Module
    mode: str
    count: int
    halt: Halt | None = None
    refs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Gate:
    """``.gate(router, *experts).using(*refs)``: the refs feed the router."""

    router: Router
    experts: tuple[Module, ...]
    refs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Switch:
    """``.switch(selector, *branches).using(*refs)``: the refs feed the selector."""

    selector: Selector
    branches: tuple[Module, ...]
    refs: tuple[str, ...] = ()


@dataclass(frozen=True)
class Map:
    """``.map(body)[.batched()].each()`` / ``.over(tag)`` / ``.slices(n)``."""

    body: Module
    mode: str
    n: int = 0
    tag: str = ""
    batched: bool = False


@dataclass(frozen=True)
class Tag:
    """``.tag(name, init=...)``, or ``.tag_group(name)`` when `group` (invalid here)."""

    name: str
    init: Init | None = None
    group: bool = False


Step: TypeAlias = "Through | Also | Fork | Split | Loop | Gate | Switch | Map | Tag"
"""One builder call (with the ``using`` that follows it)."""


@dataclass(frozen=True)
class GraphSpec:
    """A graph: ``fl.Flow(entry).input(*inputs)`` then the steps.

    Attributes:
        uid: the graph's name; nested graphs are labelled with it.
        dim: the width of every stream in the graph.
        entry: the entry module.
        inputs: its auxiliary inputs.
        steps: the builder calls after the entry.
        prebuilt: nested: handed over built (else as an unbuilt `fl.Flow`).
    """

    uid: str
    dim: int
    entry: Leaf
    inputs: tuple[AuxInput, ...] = ()
    steps: tuple[Step, ...] = ()
    prebuilt: bool = True

    @property
    def stateful(self) -> bool:
        """Whether this graph or one nested in it reads a tag before defining it."""
        return any(reads_state(self, i) for i in range(len(self.steps))) or any(
            isinstance(m, GraphSpec) and m.stateful for s in self.steps for m in modules_of(s)
        )


Module: TypeAlias = "Leaf | GraphSpec"
"""What a step runs: a user module or a nested graph."""


@dataclass(frozen=True)
class CallSpec:
    """One call of the graph: its batch size, and whether ``reset_state()`` comes first."""

    batch: int
    reset: bool = False


@dataclass(frozen=True)
class Description:
    """A fuzzed graph and how to call it.

    Attributes:
        seed: regenerates this description (``--seed S --graphs 1``).
        category: what it exercises (the report groups by it).
        graph: the top-level graph.
        calls: the consecutive calls.
        invalid: the mistake it holds, or ``None`` for a valid description.
    """

    seed: int
    category: str
    graph: GraphSpec
    calls: tuple[CallSpec, ...]
    invalid: str | None = None


# ------------------------------------------------------------------ queries


def modules_of(step: Step) -> tuple[Module, ...]:
    """The modules a step holds (bodies, branches, experts)."""
    if isinstance(step, (Through, Also, Fork, Map)):
        return (step.module,) if not isinstance(step, Map) else (step.body,)
    if isinstance(step, Loop):
        return (step.body,)
    if isinstance(step, (Split, Switch)):
        return step.branches
    if isinstance(step, Gate):
        return step.experts
    return ()


def refs_of(step: Step) -> tuple[str, ...]:
    """The tags a step reads through ``using`` (or ``over``)."""
    if isinstance(step, Map):
        return (step.tag,) if step.mode == "over" else ()
    if isinstance(step, Tag):
        return ()
    return step.refs


def tags_after(graph: GraphSpec, index: int) -> set[str]:
    """The tags defined by steps ``index, index + 1, ...`` of `graph` (later ones)."""
    return set(defined(graph.steps[index:]))


def reads_state(graph: GraphSpec, index: int) -> bool:
    """Whether step `index` reads a tag defined after it (a forward reference)."""
    return bool(set(refs_of(graph.steps[index])) & tags_after(graph, index))


def called_once(graph: GraphSpec) -> list[GraphSpec]:
    """The graphs nested in `graph` that run at most once per call of `graph`: those
    not inside a loop's or a map's body (which run once per iteration, row or slice)."""
    found: list[GraphSpec] = []
    for step in graph.steps:
        if isinstance(step, (Loop, Map)):
            continue
        for module in modules_of(step):
            if isinstance(module, GraphSpec):
                found.append(module)
                found.extend(called_once(module))
    return found


def nested_graphs(graph: GraphSpec) -> list[GraphSpec]:
    """Every graph nested in `graph`, depth first (not `graph` itself)."""
    found: list[GraphSpec] = []
    for step in graph.steps:
        for module in modules_of(step):
            if isinstance(module, GraphSpec):
                found.append(module)
                found.extend(nested_graphs(module))
    return found


def shared_tags(steps: list[Step] | tuple[Step, ...]) -> set[str]:
    """The tags `steps` declare ``shared=True``."""
    return {s.tag for s in steps if isinstance(s, Fork) and s.shared}


def defined(steps: list[Step] | tuple[Step, ...]) -> list[str]:
    """The tags `steps` define, in order (stream tags, fork outputs, group members)."""
    found: list[str] = []
    for step in steps:
        if isinstance(step, Tag):
            found.append(step.name)
        elif isinstance(step, Fork):
            found.append(step.tag)
        elif isinstance(step, Split) and step.group:
            found.extend(f"{step.group}_{i}" for i in range(len(step.branches)))
    return found


def rewrite(module: Module, uid: str, change: Callable[[GraphSpec], Module]) -> Module:
    """`module` with the graph named `uid` (itself or anywhere below) replaced by
    ``change(that graph)``."""
    if not isinstance(module, GraphSpec):
        return module
    if module.uid == uid:
        return change(module)
    return replace(module, steps=tuple(_rewrite_step(s, uid, change) for s in module.steps))


def _rewrite_step(step: Step, uid: str, change: Callable[[GraphSpec], Module]) -> Step:
    inner = modules_of(step)
    if not any(isinstance(m, GraphSpec) for m in inner):
        return step
    new = tuple(rewrite(m, uid, change) for m in inner)
    if isinstance(step, (Split, Switch)):
        return replace(step, branches=new)
    if isinstance(step, Gate):
        return replace(step, experts=new)
    if isinstance(step, (Loop, Map)):
        return replace(step, body=new[0])
    if isinstance(step, (Through, Also, Fork)):
        return replace(step, module=new[0])
    return step
