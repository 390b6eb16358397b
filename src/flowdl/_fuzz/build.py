"""From a description to an `fl.Graph`, through the public builder only.

`build(description)` makes every module the description names (user modules from
`flowdl._fuzz.leaves`, flowdl's routers, selectors, halts and merges with weights
drawn from their seeds), chains the builder calls the steps say, and returns a
`Built`: the graph, every parameter under the key the interpreter uses for its own
copy, and the nested graphs it handed over built (for `tagged`). Invalid
descriptions make the builder raise `fl.BuildError`, which `build` lets through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

import flowdl as fl
from flowdl._fuzz import leaves
from flowdl._fuzz.ir import (
    Also,
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
    Switch,
    Tag,
    Through,
)


class _Leaf(nn.Module):
    """A `Leaf` as a user would write it; subclasses fix how many refs `forward` takes."""

    def __init__(self, leaf: Leaf, params: dict[str, Tensor]) -> None:
        super().__init__()
        self.kind = leaf.kind
        self.names: list[str] = []
        weights = leaves.leaf_weights(leaf.kind, leaf.seed, leaf.din, leaf.dout, leaf.arity)
        for name, value in weights.items():
            parameter = nn.Parameter(value)
            self.register_parameter(name, parameter)
            self.names.append(name)
            params[f"{leaf.seed}.{name}"] = parameter

    def compute(self, x: Tensor, *refs: Tensor) -> Tensor:
        weights = {name: getattr(self, name) for name in self.names}
        return leaves.leaf_forward(self.kind, weights, x, list(refs))

    def extra_repr(self) -> str:
        return self.kind


class Leaf0(_Leaf):
    """A leaf reading the stream only."""

    def forward(self, x: Tensor) -> Tensor:
        return self.compute(x)


class Leaf1(_Leaf):
    """A leaf reading the stream and one reference."""

    def forward(self, x: Tensor, r0: Tensor) -> Tensor:
        return self.compute(x, r0)


class Leaf2(_Leaf):
    """A leaf reading the stream and two references."""

    def forward(self, x: Tensor, r0: Tensor, r1: Tensor) -> Tensor:
        return self.compute(x, r0, r1)


class Leaf3(_Leaf):
    """A leaf reading the stream and three references."""

    def forward(self, x: Tensor, r0: Tensor, r1: Tensor, r2: Tensor) -> Tensor:
        return self.compute(x, r0, r1, r2)


class NamedLeaf(_Leaf):
    """A leaf reading its references by name (`forward_named`), declaring them."""

    def __init__(self, leaf: Leaf, params: dict[str, Tensor], names: tuple[str, ...]) -> None:
        super().__init__(leaf, params)
        self.ref_tags = list(names)

    def ref_names(self) -> list[str]:
        return list(self.ref_tags)

    def forward_named(self, x: Tensor, refs: dict[str, Tensor]) -> Tensor:
        return self.compute(x, *(refs[name] for name in self.ref_tags))

    def forward(self, x: Tensor) -> Tensor:
        raise RuntimeError("NamedLeaf is called through forward_named only")


class RowSelector(nn.Module):
    """A per-sample selector: `leaves.row_selector`."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: Tensor, *refs: Tensor) -> Tensor:
        return leaves.row_selector(x, list(refs), self.n)


class BatchSelector(nn.Module):
    """A whole-batch selector returning an ``int``: `leaves.batch_selector`."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: Tensor, *refs: Tensor) -> int:
        return leaves.batch_selector(x, list(refs), self.n)


class RowSumHalt(nn.Module):
    """A per-sample halt: `leaves.row_sum_halt`."""

    def __init__(self, level: float, keepdim: bool) -> None:
        super().__init__()
        self.level, self.keepdim = level, keepdim

    def forward(self, state: Tensor) -> Tensor:
        return leaves.row_sum_halt(state, self.level, self.keepdim)


class MeanHalt(nn.Module):
    """A whole-batch halt: `leaves.mean_halt`."""

    def __init__(self, level: float) -> None:
        super().__init__()
        self.level = level

    def forward(self, state: Tensor) -> Tensor:
        return leaves.mean_halt(state, self.level)


@dataclass
class Built:
    """A built description.

    Attributes:
        graph: the top-level graph.
        params: every parameter, keyed like the interpreter's copies.
        nested: the nested graphs handed over built, by uid.
    """

    graph: fl.Graph
    params: dict[str, Tensor] = field(default_factory=dict)
    nested: dict[str, fl.Graph] = field(default_factory=dict)


class _Builder:
    def __init__(self) -> None:
        self.params: dict[str, Tensor] = {}
        self.nested: dict[str, fl.Graph] = {}

    def leaf(self, leaf: Leaf, refs: tuple[str, ...] = ()) -> Any:
        if leaf.named and refs:
            return NamedLeaf(leaf, self.params, refs)
        if leaf.kind == "stateadd":
            return fl.StateAdd()
        if leaf.kind == "sin" and leaf.arity == 0:
            return torch.sin  # a plain callable node
        classes = {0: Leaf0, 1: Leaf1, 2: Leaf2, 3: Leaf3}
        return classes[leaf.arity](leaf, self.params)

    def module(self, module: Module, refs: tuple[str, ...] = ()) -> Any:
        """What the builder is given for `module`, which reads `refs`."""
        if isinstance(module, Leaf):
            return self.leaf(module, refs)
        flow = self.flow(module).label(module.uid)
        if not module.prebuilt:
            return flow
        graph = flow.build()
        self.nested[module.uid] = graph
        return graph

    def projecting(self, made: nn.Module, seed: int, din: int, dout: int) -> nn.Module:
        """A flowdl module with a ``proj`` Linear, in float64, weights from `seed`."""
        made = made.double()
        weight, bias = leaves.projection_weights(seed, din, dout)
        proj = made.proj
        assert isinstance(proj, nn.Linear)
        with torch.no_grad():
            proj.weight.copy_(weight)
            proj.bias.copy_(bias)
        self.params[f"{seed}.weight"], self.params[f"{seed}.bias"] = proj.weight, proj.bias
        return made

    def router(self, router: Router, dim: int) -> nn.Module:
        if router.kind == "topk":
            made: nn.Module = fl.TopKRouter(dim, router.n, router.k, renormalize=router.renormalize)
        elif router.kind == "sigmoid":
            made = fl.SigmoidRouter(dim, router.n)
        else:
            made = fl.SoftmaxRouter(dim, router.n)
        return self.projecting(made, router.seed, dim, router.n)

    def selector(self, selector: Selector, dim: int) -> nn.Module:
        if selector.kind == "fixed":
            return fl.FixedSelector(selector.index)
        if selector.kind == "argmax":
            return self.projecting(
                fl.ArgmaxSelector(dim, selector.n), selector.seed, dim, selector.n
            )
        if selector.kind == "rows":
            return RowSelector(selector.n)
        return BatchSelector(selector.n)

    def halt(self, halt: Halt, dim: int) -> nn.Module:
        if halt.kind == "threshold":
            return fl.ThresholdHalt(halt.level)
        if halt.kind == "learned":
            return self.projecting(fl.LearnedHalt(dim), halt.seed, dim, 1)
        if halt.kind == "mean":
            return MeanHalt(halt.level)
        return RowSumHalt(halt.level, keepdim=halt.kind == "rowsum1")

    def init(self, init: Init, dim: int) -> Any:
        if init.kind == "shape":
            return (dim,)
        if init.kind == "callable":
            return leaves.init_callable
        if init.kind == "buffer":
            return leaves.init_weight(init.kind, init.seed, dim)
        parameter = nn.Parameter(leaves.init_weight(init.kind, init.seed, dim))
        self.params[f"{init.seed}.init"] = parameter
        return parameter

    def merge(self, flow: fl.Flow, merge: Merge) -> fl.Flow:
        if merge.kind == "cat":
            assert merge.project is not None
            return flow.merge(fl.Cat(dim=-1)).through(self.leaf(merge.project))
        op: Any = {"add": fl.Add(), "mean": fl.Mean()}.get(merge.kind, leaves.product)
        return flow.merge(op)

    def flow(self, spec: GraphSpec) -> fl.Flow:
        """The unbuilt flow of `spec`: every builder call its steps name."""
        flow = fl.Flow(self.leaf(spec.entry))
        for aux in spec.inputs:
            flow = flow.input(aux.name, per_sample=aux.per_sample)
        for step in spec.steps:
            flow = self.step(flow, step, spec.dim)
        return flow

    def step(self, flow: fl.Flow, step: Any, dim: int) -> fl.Flow:
        if isinstance(step, Tag):
            if step.group:
                return flow.tag_group(step.name)
            if step.init is None:
                return flow.tag(step.name)
            return flow.tag(step.name, init=self.init(step.init, dim))
        if isinstance(step, Map):
            opened = flow.map(self.module(step.body))
            opened = opened.batched() if step.batched else opened
            if step.mode == "each":
                return opened.each()
            return opened.over(step.tag) if step.mode == "over" else opened.slices(step.n)
        if isinstance(step, Through):
            flow = flow.through(self.module(step.module, step.refs))
        elif isinstance(step, Also):
            flow = flow.also(self.module(step.module, step.refs))
        elif isinstance(step, Fork):
            flow = flow.fork(self.module(step.module, step.refs))
        elif isinstance(step, Split):
            flow = flow.split(*(self.module(m, step.refs) for m in step.branches))
        elif isinstance(step, Gate):
            experts = [self.module(m) for m in step.experts]
            flow = flow.gate(self.router(step.router, dim), *experts)
        elif isinstance(step, Switch):
            branches = [self.module(m) for m in step.branches]
            flow = flow.switch(self.selector(step.selector, dim), *branches)
        elif isinstance(step, Loop):
            flow = self.loop(flow, step, dim)
        if step.refs:
            flow = flow.using(*step.refs)
        if isinstance(step, Fork):
            flow = flow.tag(step.tag, shared=True) if step.shared else flow.tag(step.tag)
        if isinstance(step, Split):
            flow = flow.tag_group(step.group) if step.group else flow
            flow = self.merge(flow, step.merge) if step.merge is not None else flow
        return flow

    def loop(self, flow: fl.Flow, step: Loop, dim: int) -> fl.Flow:
        opened = flow.loop(self.module(step.body, step.refs))
        if step.mode == "open":  # left without its terminator: the chain goes on
            return flow
        if step.mode == "for":
            return opened.for_(step.count)
        assert step.halt is not None
        cond = self.halt(step.halt, dim)
        if step.mode == "while":
            return opened.while_(cond, step.count)
        return opened.until(cond, step.count)


def build(description: Description) -> Built:
    """Build `description`'s graph in float64 (raises `fl.BuildError` when invalid).

    Example:
        >>> from flowdl._fuzz.describe import describe
        >>> built = build(describe(3))
        >>> type(built.graph).__name__
        'Graph'
    """
    builder = _Builder()
    graph = builder.flow(description.graph).build()
    graph.double()
    return Built(graph, builder.params, builder.nested)
