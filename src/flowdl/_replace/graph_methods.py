"""How `fl.Graph` follows a replaced submodule: its record, its plan, its caches.

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
3. recompiles its plan, keeping its state cells (state carried across calls
   survives; enclosing graphs keep pointing at the same cells), and drops or
   rebuilds what it derived from the old plan: the nested state cells, the tree
   cache, the profiler, and in fast mode the compiled segments, compiled again
   with the options of `Graph.compile`.

All of it happens at replacement time; the forward pass is untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from torch import nn

from flowdl._builder.ir import NodeKind
from flowdl._control.base import ControlNode
from flowdl._executor.fast import FastItem, split_plan
from flowdl._executor.plan import compile_plan
from flowdl._executor.state import StateCell
from flowdl._profile.runner import Profiler
from flowdl._replace.calls import sync_calls
from flowdl._replace.checks import check_node
from flowdl._replace.messages import not_a_module
from flowdl._replace.watch import Replaceable
from flowdl._tree.children import check_children

if TYPE_CHECKING:
    from flowdl._builder.record import FlowRecord
    from flowdl._executor.plan import Plan

__all__ = ["GraphReplacementMixin", "nested_cells"]


class GraphReplacementMixin(Replaceable):
    """Replacing the submodules of a built graph; `fl.Graph` inherits it."""

    if TYPE_CHECKING:
        _record: FlowRecord
        _plan: Plan
        _nodes_behind: dict[str, tuple[int, ...]]
        _fast: tuple[FastItem, ...] | None

        def short_description(self) -> str: ...

    _fast_options: dict[str, Any] | None = None
    """The keyword arguments of the last `Graph.compile` (fast mode), to compile again."""

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
        state = self.__dict__
        state.pop("_tree_nested", None)  # the labelled graphs below may have changed
        check_children(self, f"a submodule of {self.short_description()} was replaced")  # type: ignore[arg-type]
        sync_calls(record)
        plan = compile_plan(record, self._plan.cells)
        state["_plan"] = plan
        state["_steps"] = plan.steps
        state["_nested_cells"] = nested_cells(self)
        if state.get("_profiler") is not None:
            state["_profiler"] = Profiler(plan)
        if self._fast is not None:
            self._compile_again()

    def _compile_again(self) -> None:
        """Fast mode after a replacement: compile the segments of the new plan with the
        options of `Graph.compile`, and graphs brought in by the replacement with them."""
        from flowdl._executor.graph import Graph

        options = self._fast_options or {}
        for module in self.modules():
            if isinstance(module, Graph) and module is not self and module._fast is None:
                module.__dict__["_fast"] = split_plan(module._plan, options)
                module.__dict__["_fast_options"] = options
        self.__dict__["_fast"] = split_plan(self._plan, options)


def nested_cells(graph: nn.Module) -> tuple[StateCell, ...]:
    """The state cells of every graph nested in `graph`: what a failed call restores."""
    from flowdl._executor.graph import Graph

    return tuple(
        cell
        for module in graph.modules()
        if isinstance(module, Graph) and module is not graph
        for cell in module._plan.cells.values()
    )
