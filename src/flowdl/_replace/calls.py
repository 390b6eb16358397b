"""Keep a graph's recorded builder calls in step with the modules its nodes hold.

``repr(graph)`` and the "built by" line of errors render the builder calls as
written. After a submodule is replaced, the argument that stood for it is swapped
for the new module, so both show what the graph runs.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Any

from flowdl._control.base import ControlNode
from flowdl._executor.core import GraphCore
from flowdl._ir.nodes import BuilderCall, ChainSource, NodeKind
from flowdl._ir.record import FlowRecord

__all__ = ["FlowArgument", "sync_calls"]

_CONDITION_TERMINATORS = frozenset({"while_", "until"})


def sync_calls(record: FlowRecord) -> None:
    """Point every call argument that names a node's module at the module it holds now.

    A module node is the ``k``-th argument of its call (``.split(a, b)`` makes two
    nodes of one call); a construct's inner callables are its call's arguments in
    order (``.gate(router, *experts)``), and a loop's halt condition is the first
    argument of the ``.while_`` / ``.until`` call after it.
    """
    calls = record.calls
    position = {id(call): i for i, call in enumerate(calls)}
    args = [list(call.args) for call in calls]
    taken: Counter[int] = Counter()
    for node in record.nodes:
        if node.module is None or node.kind not in (NodeKind.MODULE, NodeKind.MERGE):
            continue
        at = position.get(id(node.call))
        if at is None:
            continue
        if not isinstance(node.module, ControlNode):
            _put(args, at, taken[at], node.module)
            taken[at] += 1
            continue
        for k, (_, fn) in enumerate(node.module.inner()):
            if k < len(args[at]):
                _put(args, at, k, fn)
            elif at + 1 < len(calls) and calls[at + 1].method in _CONDITION_TERMINATORS:
                _put(args, at + 1, k - len(args[at]), fn)
    renamed: dict[int, BuilderCall] = {}
    for i, call in enumerate(calls):
        if any(a is not b for a, b in zip(args[i], call.args, strict=True)):
            calls[i] = renamed[id(call)] = replace(call, args=tuple(args[i]))
    if renamed:
        for node in record.nodes:
            node.call = renamed.get(id(node.call), node.call)
            node.ref_calls = [renamed.get(id(c), c) for c in node.ref_calls]


class FlowArgument(ChainSource):
    """An unbuilt flow given to a builder call, shown by the calls of the graph it became.

    ``.through(fl.Flow(a).through(b))`` records the flow, which renders as its chain.
    Once a module inside the built graph is replaced, the flow's chain is out of date;
    this stands in for it and renders the graph's calls (which follow replacements)
    the same way.
    """

    __slots__ = ("graph",)

    def __init__(self, graph: GraphCore) -> None:
        self.graph = graph

    def _chain_calls(self) -> list[BuilderCall]:
        return self.graph._record.calls

    def __repr__(self) -> str:
        # As messages describe an unbuilt flow: its chain when short, else "Flow".
        text = f"<unbuilt {''.join(c.text for c in self._chain_calls())}>"
        return text if len(text) <= 72 else "Flow"


def _put(args: list[list[Any]], at: int, k: int, module: Any) -> None:
    if k >= len(args[at]):
        return
    arg = args[at][k]
    if arg is module or (isinstance(arg, FlowArgument) and arg.graph is module):
        return
    if isinstance(arg, ChainSource) and isinstance(module, GraphCore):
        if not _built_from(arg, module):
            args[at][k] = FlowArgument(module)
        return
    args[at][k] = module


def _built_from(flow: ChainSource, graph: GraphCore) -> bool:
    """Whether `graph` was built from the unbuilt `flow` and its calls are still the flow's."""
    built, calls = graph._record.calls, flow._chain_calls()
    return len(built) == len(calls) and all(a is b for a, b in zip(built, calls, strict=True))
