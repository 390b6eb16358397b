"""Replacement, a feature of `fl.Graph`: the graph follows a replaced submodule.

When a node's module is replaced (``g.Linear_0 = m``, ``g.add_module("Linear_0", m)``,
``g._modules["Linear_0"] = m``), or a module somewhere below changes (the body of
a loop, an expert of a gate, a nested graph's node), the graph

1. points the nodes registered under the written name at the new module (a
   module shared by several nodes at build time is registered once and replaced
   in all of them; a name that no node stands for, such as a new attribute, moves
   no node);
2. checks the new module as `build()` would (its references, its arity, its
   protocols; labels of nested graphs stay unique) and refuses it otherwise,
   leaving everything as it was;
3. recompiles its plan (`GraphCore._recompile`), keeping its state cells (state
   carried across calls survives; enclosing graphs keep pointing at the same
   cells); in fast mode the segments are compiled again with the options of
   `Graph.compile`. What other features derived from the old plan (the tree
   cache, the profiler's view of the levels) sees a new plan and rebuilds itself.

All of it happens at replacement time; the forward pass is untouched. Hearing
the write is the mechanism of `flowdl._watch`; this module is the reaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from flowdl._control.base import ControlNode
from flowdl._executor.core import GraphCore
from flowdl._ir.contracts import check_node
from flowdl._ir.nodes import NodeKind
from flowdl._ir.record import FlowRecord
from flowdl._replace.calls import sync_calls
from flowdl._tree.children import check_children
from flowdl._watch.messages import not_a_module
from flowdl._watch.watch import Replaceable

__all__ = ["Replacement"]


class Replacement(Replaceable, GraphCore):
    """Replacing the submodules of a built graph; a feature of `fl.Graph`."""

    def __init__(self, record: FlowRecord) -> None:
        super().__init__(record)
        self._start_watching()

    def _users(self, name: str) -> list[str]:
        """The ids of the nodes that run the child registered as `name`."""
        nodes = self._record.nodes
        return [nodes[i].id for i in self._nodes_behind.get(name, ())]

    def _check_value(self, name: str, before: Any, after: Any) -> None:
        if self._users(name) and not isinstance(after, nn.Module):
            raise not_a_module(self._describe_child(name), before, after)

    def _describe_child(self, name: str) -> str:
        users = self._users(name)
        ran_by = f" (node {', '.join(users)})" if users and users != [name] else ""
        return f"{name!r}{ran_by} of {self.short_description()}"

    def _rebind(self, name: str, before: Any, after: Any) -> Callable[[], None]:
        # By name, not by module: after a swap or a tie, one module may stand behind
        # two names, and a write to one name must not move the nodes of the other.
        nodes = self._record.nodes
        changed = [nodes[i] for i in self._nodes_behind.get(name, ())]
        previous = [node.module for node in changed]
        for node in changed:
            node.module = after

        def undo() -> None:
            for node, module in zip(changed, previous, strict=True):
                node.module = module

        return undo

    def _refresh(self, sources: set[int]) -> None:
        record = self._record
        for node in record.nodes:
            if node.kind in (NodeKind.MODULE, NodeKind.MERGE):
                module = node.module
                node.ref_target = module.receiver if isinstance(module, ControlNode) else None
        for node in record.nodes:
            if node.module is not None and id(node.module) in sources:
                check_node(node, record)
        sync_calls(record)
        self._recompile()
        # after the recompile: the tree's cache sees the new plan
        check_children(self, f"a submodule of {self.short_description()} was replaced")
