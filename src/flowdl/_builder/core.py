"""The builder's state, and the bookkeeping every builder call shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any, Union

from torch import nn

from flowdl._builder.arguments import check_callable
from flowdl._control.base import ControlNode
from flowdl._describe import type_name
from flowdl._errors import BuildError
from flowdl._graph import Graph
from flowdl._ir.nodes import BuilderCall, ChainSource, Node, NodeKind
from flowdl._ir.record import FlowRecord, StateInit

NodeLike = Union[nn.Module, Callable[..., Any], "FlowCore"]
"""What can become a node: any `nn.Module`, any callable taking tensors, or an unbuilt Flow."""

UNSET: Any = object()
"""Marks a keyword argument the user did not give."""


class FlowCore(ChainSource):
    """The chain recorded so far: nodes, calls, open streams, tags, pending references."""

    _nodes: list[Node]
    _calls: list[BuilderCall]
    _counters: dict[str, int]
    _tags: dict[str, int]
    _groups: dict[str, list[str]]
    _pending_refs: dict[str, list[int]]
    _state_writers: dict[str, int]
    _state_inits: dict[str, StateInit]
    _pending_fork: int | None
    _split_call: BuilderCall | None
    _label: str | None
    _open: BuilderCall | None
    _inputs: list[int]
    _streams: list[int]
    _targets: list[int]

    def _start(self, module: Any) -> None:
        """Record ``fl.Flow(module)``: graph input ``x`` feeding the entry node `module`."""
        self._nodes = []
        self._calls = []
        self._counters = {}
        self._tags = {}
        self._groups = {}
        self._pending_refs = {}
        self._state_writers = {}
        self._state_inits = {}
        self._pending_fork = None
        self._split_call = None
        self._label = None
        self._open = None
        call = self._next_call("Flow", (module,))
        fn = self._node_callable(module, call)
        self._calls.append(call)
        x = self._add_node(NodeKind.INPUT, "input", call, input_name="x", unique=True)
        self._inputs = [x]
        entry = self._add_module(fn, [x], call)
        self._streams = [entry]
        self._targets = [entry]

    def build(self) -> Graph:
        """Check the whole graph and compile it into an `fl.Graph` (see `Flow.build`)."""
        raise NotImplementedError

    def _chain_calls(self) -> list[BuilderCall]:
        return self._calls

    def _node_callable(self, obj: Any, call: BuilderCall) -> Any:
        """What `obj` becomes in a node: itself (a module or callable), or the graph an
        unbuilt flow builds."""
        if isinstance(obj, FlowCore):
            return obj.build()
        return check_callable(obj, call)

    def _next_call(self, method: str, args: tuple[Any, ...], **kwargs: Any) -> BuilderCall:
        kw = tuple((k, v) for k, v in kwargs.items() if v is not UNSET)
        call = BuilderCall(len(self._calls) + 1, method, args, kw)
        if self._open is not None:
            opened = self._open
            finish = (
                ".for_(n), .while_(cond, max_iter) or .until(cond, max_iter)"
                if opened.method == "loop"
                else ".each(), .over(tag) or .slices(n) (after .batched(), if wanted)"
            )
            raise BuildError(
                f"{opened.text} is not finished: {call.name} cannot come before its terminator",
                call=str(call),
                expected=f"{opened.name} followed directly by {finish}",
                received=f"{opened.text}{call.text}",
                fix=f"finish it first, e.g. {opened.name}{finish.split(',')[0]}; the terminator "
                "returns the flow, on which the chain goes on",
            )
        return call

    def _add_node(
        self, kind: NodeKind, base: str, call: BuilderCall, *, unique: bool = False, **fields: Any
    ) -> int:
        taken = {n.id for n in self._nodes}
        if unique:
            node_id = base
        else:
            k = self._counters.get(base, 0)
            while f"{base}_{k}" in taken:
                k += 1
            self._counters[base] = k + 1
            node_id = f"{base}_{k}"
        node = Node(index=len(self._nodes), id=node_id, kind=kind, call=call, **fields)
        self._nodes.append(node)
        return node.index

    def _add_module(
        self,
        fn: Any,
        inputs: list[int],
        call: BuilderCall,
        kind: NodeKind = NodeKind.MODULE,
        **fields: Any,
    ) -> int:
        """A node applying `fn`; a labelled graph is known by its label (``encoder``)."""
        label = fn.label if isinstance(fn, Graph) else None
        if label is None:
            return self._add_node(kind, type_name(fn), call, module=fn, inputs=inputs, **fields)
        clash = next((n for n in self._nodes if label in (n.id, _label(n))), None)
        if clash is None:
            return self._add_node(
                kind, label, call, unique=True, module=fn, inputs=inputs, **fields
            )
        if clash.module is not fn:
            raise BuildError(
                f"two different graphs are labelled {label!r} in this graph"
                if _label(clash) == label
                else f"the label {label!r} is already the id of node {clash.id}",
                call=str(call),
                expected="labels unique among the nodes of one graph: they name its "
                f"children (paths such as '{label}.hidden', state_dict keys '{label}.*')",
                received=f"{fn.short_description()}, and {clash.id} from {clash.call}",
                fix="label one of them differently, or pass the same graph object twice to "
                "share its parameters",
            )
        self._counters.setdefault(label, 1)
        return self._add_node(kind, label, call, module=fn, inputs=inputs, **fields)

    def _begin(self, method: str, args: tuple[Any, ...], **kwargs: Any) -> BuilderCall:
        """Start a call that adds to the graph: an unnamed fork output is an error now."""
        call = self._next_call(method, args, **kwargs)
        if self._pending_fork is not None:
            fork = self._nodes[self._pending_fork]
            raise BuildError(
                f"the side output of {fork.call.text} is never named",
                call=str(call),
                expected=".tag(name) right after .fork(...) (after its .using(...), if any): "
                "the tag is how the side output is read later",
                received=call.text,
                fix=f"insert .tag('side') before {call.text}, or use .through() if the "
                "forked module should be on the main stream",
            )
        return call

    def _single_stream(self, call: BuilderCall) -> int:
        if len(self._streams) == 1:
            return self._streams[0]
        n = len(self._streams)
        split = self._split_call
        raise BuildError(
            f".{call.method}() needs a single stream, got {n} open branches from .split(); "
            "call .merge(...) first",
            call=str(call),
            expected="one stream",
            received=f"{n} branches opened by {split}" if split else f"{n} branches",
            fix="combine the branches with .merge(fl.Add()), .merge(fl.Mean()), "
            f".merge(fl.Cat(dim=-1)) or .merge(your_function) before .{call.method}()",
        )

    def _record(self) -> FlowRecord:
        nodes = [
            replace(
                n,
                module=n.module.rebuilt() if isinstance(n.module, ControlNode) else n.module,
                inputs=list(n.inputs),
                ref_names=list(n.ref_names),
                ref_calls=list(n.ref_calls),
                tags=list(n.tags),
            )
            for n in self._nodes
        ]
        return FlowRecord(
            nodes=nodes,
            calls=list(self._calls),
            inputs=list(self._inputs),
            output=self._streams[0],
            tags=dict(self._tags),
            groups={k: tuple(v) for k, v in self._groups.items()},
            state_writers=dict(self._state_writers),
            state_inits=dict(self._state_inits),
            label=self._label,
        )


def _label(node: Node) -> str | None:
    return node.module.label if isinstance(node.module, Graph) else None
