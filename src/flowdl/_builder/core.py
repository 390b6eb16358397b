"""The builder's state, and the bookkeeping every builder call shares.

A flow is a value: a builder call never changes the flow it is called on. It runs on
a new flow (`FlowCore._derive`) that shares the recorded prefix: the lists and dicts
are copied (references, not nodes), a node is copied before the call changes it
(`FlowCore._own`), and modules are never copied, so graphs built from one prefix share
its modules. A flow is only ever changed by the call that creates it.

Code written for a builder that changed the flow in place (``flow.through(m)`` with
the result dropped) would silently build the flow before the call; instead, the next
call on a flow whose result was dropped unused is a `BuildError` (`Derived`).
"""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Concatenate, NoReturn, ParamSpec, TypeVar, Union

from torch import nn

from flowdl._builder.arguments import check_callable
from flowdl._control.base import ControlNode
from flowdl._describe import describe_value, type_name
from flowdl._errors import BuildError
from flowdl._graph import Graph
from flowdl._ir.nodes import BuilderCall, ChainSource, Node, NodeKind
from flowdl._ir.record import FlowRecord, StateInit

NodeLike = Union[nn.Module, Callable[..., Any], "FlowCore"]
"""What can become a node: any `nn.Module`, any callable taking tensors, or an unbuilt Flow."""

UNSET: Any = object()
"""Marks a keyword argument the user did not give."""

F = TypeVar("F", bound="FlowCore")
P = ParamSpec("P")
R = TypeVar("R")

FINISH = {
    "loop": ".for_(n), .while_(cond, max_iter) or .until(cond, max_iter)",
    "map": ".each(), .over(tag) or .slices(n) (after .batched(), if wanted)",
}
"""The terminators of each open construct, as listed in messages."""


def builder_call(method: Callable[Concatenate[F, P], R]) -> Callable[Concatenate[F, P], R]:
    """Make `method` a builder call: it runs on a new flow sharing this one's prefix,
    and this one is left unchanged (a failing call leaves nothing behind)."""

    @functools.wraps(method)
    def call(self: F, /, *args: P.args, **kwargs: P.kwargs) -> R:
        flow = self._derive(method.__name__, args, kwargs)
        result = method(flow, *args, **kwargs)
        self._adopt(flow)
        return result

    return call


def unfinished(opened: BuilderCall, call: BuilderCall, received: str, fix: str) -> BuildError:
    """The error for a call that comes between an open construct and its terminator."""
    finish = FINISH[opened.method]
    return BuildError(
        f"{opened.text} is not finished: {call.name} cannot come before its terminator",
        call=str(call),
        expected=f"{opened.name} followed directly by {finish}",
        received=received,
        fix=fix.format(finish=f"{opened.name}{finish.split(',')[0]}"),
    )


def not_built(
    flow: FlowCore, args: tuple[Any, ...], opened: BuilderCall | None = None
) -> BuildError:
    """The error for calling an unbuilt flow (or a construct left open) on inputs."""
    chain = "".join(c.text for c in flow._calls)
    given = ", ".join(describe_value(a) for a in args)
    build = f"{opened.name}{FINISH[opened.method].split(',')[0]}.build()" if opened else ".build()"
    return BuildError(
        (f"{opened.text} is not finished, and " if opened else "")
        + "an unbuilt fl.Flow cannot be called: call .build() first",
        call=str(flow._calls[-1]),
        expected="an fl.Graph, the nn.Module that .build() returns: g = flow.build(), then g(x)",
        received=f"{chain}({given})",
        fix=f"build once, then call the graph: g = flow{build}; g(x) (a Flow only "
        "records the chain; build() checks it and makes the module)",
    )


class Unfinished:
    """Base of `LoopBuilder` and `MapBuilder`: a chain whose last construct waits for its
    terminator. Given where a module is expected, it is refused, naming the terminators."""

    _flow: FlowCore
    _call: BuilderCall

    def _refuse_as_module(self, call: BuilderCall) -> NoReturn:
        opened = self._call
        finish = FINISH[opened.method]
        raise BuildError(
            f"{call.name} was given a chain whose {opened.text} is not finished",
            call=str(call),
            expected=f"a module, a callable or a flow; {opened.name} followed directly by {finish}",
            received=f"<unfinished {''.join(c.text for c in self._flow._calls)}>",
            fix=f"finish it first, e.g. {opened.name}{finish.split(',')[0]}",
        )


@dataclass(eq=False)
class Derived:
    """A flow returned by a builder call, as its parent keeps track of it until it is used.

    A flow is used when it is extended, built or nested. One dropped unused is almost
    always code that expects the call to change the flow in place; the parent refuses
    the next call (`FlowCore._check_derived`) rather than build without it.
    """

    flow: weakref.ref[FlowCore]
    call: BuilderCall
    opened: BuilderCall | None
    """The construct the flow leaves open (``.loop(body)`` before its terminator)."""
    used: bool = False

    def error(self, parent: FlowCore, call: BuilderCall) -> BuildError:
        """The error for `call` on `parent` once this flow is dropped unused."""
        before = "".join(c.text for c in parent._calls)
        dropped = f"{before}{self.call.text} dropped, then {call.text} on {before}"
        if self.opened is not None and parent._open is None:
            return unfinished(
                self.opened,
                call,
                dropped,
                "finish it and keep the flow the terminator returns, e.g. flow = flow{finish} "
                "(a builder call returns a new flow and never changes the one it is called on)",
            )
        if parent._open is not None and self.opened is None:
            return BuildError(
                f"{parent._open.text} is already finished by {self.call.text}, "
                "whose flow was dropped unused",
                call=str(call),
                expected=f"the flow {self.call.text} returns kept: the chain goes on from it",
                received=dropped,
                fix=f"keep the result: flow = flow{parent._open.name}{self.call.text}",
            )
        return BuildError(
            f"the result of {self.call.text} was dropped unused, and {call.name} is called "
            "on the flow without it: a builder call returns a new flow and never changes "
            "the one it is called on",
            call=str(call),
            expected="each call's result kept: the chain goes on from what it returns",
            received=dropped,
            fix=f"keep the result: flow = flow{self.call.text} (a flow can also be extended "
            "twice on purpose: each result shares its prefix)",
        )


_CONTAINERS = (
    "_nodes",
    "_ids",
    "_calls",
    "_inputs",
    "_counters",
    "_tags",
    "_groups",
    "_pending_refs",
    "_state_writers",
    "_state_inits",
    "_per_sample_inputs",
    "_shared_tags",
)
"""The containers a builder call may change: each new flow gets its own (shallow) copies."""


class FlowCore(ChainSource):
    """The chain recorded so far: nodes, calls, open streams, tags, pending references."""

    _nodes: list[Node]
    _ids: set[str]
    _calls: list[BuilderCall]
    _counters: dict[str, int]
    _tags: dict[str, int]
    _groups: dict[str, list[str]]
    _pending_refs: dict[str, list[int]]
    _state_writers: dict[str, int]
    _state_inits: dict[str, StateInit]
    _per_sample_inputs: set[str]
    _shared_tags: set[str]
    _pending_fork: int | None
    _split_call: BuilderCall | None
    _label: str | None
    _open: BuilderCall | None
    _inputs: list[int]
    _streams: list[int]
    _targets: list[int]
    _derived: list[Derived]
    _origin: Derived | None

    def _start(self, module: Any) -> None:
        """Record ``fl.Flow(module)``: graph input ``x`` feeding the entry node `module`."""
        self._nodes = []
        self._ids = set()
        self._calls = []
        self._counters = {}
        self._tags = {}
        self._groups = {}
        self._pending_refs = {}
        self._state_writers = {}
        self._state_inits = {}
        self._per_sample_inputs = set()
        self._shared_tags = set()
        self._pending_fork = None
        self._split_call = None
        self._label = None
        self._open = None
        self._derived = []
        self._origin = None
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

    # ------------------------------------------------------- a flow is a value

    def _derive(self: F, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> F:
        """A new flow with this one's chain, for the builder call `method` to extend.

        Copies the containers, not what they hold: O(nodes) references, no module.
        """
        self._check_derived(method, args, kwargs)
        state = self.__dict__.copy()
        for name in _CONTAINERS:
            state[name] = state[name].copy()
        state["_derived"], state["_origin"] = [], None
        flow = object.__new__(type(self))
        flow.__dict__ = state
        return flow

    def _adopt(self, flow: FlowCore) -> None:
        """Keep track of `flow`, just returned by a builder call on this one, until used."""
        derived = Derived(weakref.ref(flow), flow._calls[-1], flow._open)
        flow._origin = derived
        self._derived.append(derived)

    def _check_derived(
        self, method: str, args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None
    ) -> None:
        """Mark this flow used; refuse the call `method(*args, **kwargs)` if a flow derived
        from this one was dropped unused (the chain was written for a builder that
        changes the flow in place)."""
        if self._origin is not None:
            self._origin.used = True
            self._origin = None
        if not self._derived:
            return
        waiting = []
        for derived in self._derived:
            if derived.used:
                continue
            if derived.flow() is None:
                self._derived = [d for d in self._derived if d is not derived and not d.used]
                raise derived.error(self, self._next_call(method, args, **(kwargs or {})))
            waiting.append(derived)
        self._derived = waiting

    def __getstate__(self) -> dict[str, Any]:
        """Copies and pickles (of a graph naming this flow in its calls) leave the
        tracking of derived flows behind."""
        state = dict(self.__dict__)
        state["_derived"], state["_origin"] = [], None
        return state

    def _own(self, index: int) -> Node:
        """Node `index`, copied first: the node may be shared with the flow this one extends."""
        node = object.__new__(Node)
        node.__dict__.update(self._nodes[index].__dict__)
        for name in ("inputs", "ref_names", "ref_calls", "tags"):
            setattr(node, name, list(getattr(node, name)))
        self._nodes[index] = node
        return node

    # ------------------------------------------------------------ bookkeeping

    def _node_callable(self, obj: Any, call: BuilderCall) -> Any:
        """What `obj` becomes in a node: itself (a module or callable), or the graph an
        unbuilt flow builds."""
        if isinstance(obj, FlowCore):
            return obj.build()
        if isinstance(obj, Unfinished):
            obj._refuse_as_module(call)
        return check_callable(obj, call)

    def _next_call(self, method: str, args: tuple[Any, ...], **kwargs: Any) -> BuilderCall:
        """The call `method(*args, **kwargs)` would be in this chain (not recorded yet)."""
        kw = tuple((k, v) for k, v in kwargs.items() if v is not UNSET)
        return BuilderCall(len(self._calls) + 1, method, args, kw)

    def _add_node(
        self, kind: NodeKind, base: str, call: BuilderCall, *, unique: bool = False, **fields: Any
    ) -> int:
        taken = self._ids
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
        taken.add(node_id)
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
            per_sample_inputs=frozenset(self._per_sample_inputs),
            shared_tags=frozenset(self._shared_tags),
        )


def _label(node: Node) -> str | None:
    return node.module.label if isinstance(node.module, Graph) else None
