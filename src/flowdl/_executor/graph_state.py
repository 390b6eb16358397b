"""`GraphState`: what a graph offers about its forward-reference state.

Whether state keeps its history across calls, forgetting it, cutting its history,
and moving it with the parameters. The state itself lives in the plan's cells
(`flowdl._executor.state`); `flowdl._executor.guard` keeps the rules of calls that
read and write it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from torch import Tensor

from flowdl._executor.guard import StateGuard
from flowdl._executor.inits import DeclaredInits
from flowdl._executor.plan import Plan
from flowdl._executor.state import detach, map_tensors
from flowdl._ir.record import FlowRecord

__all__ = ["GraphState"]


class GraphState(DeclaredInits):
    """The state methods of `GraphCore` (its base): see `fl.Graph` for their use."""

    _plan: Plan
    _record: FlowRecord
    _backprop_state: bool
    _guard: StateGuard | None

    def _locked(self) -> contextlib.AbstractContextManager[None]:
        """Hold the call locks of the graph and its nested graphs (none without state)."""
        guard = self._guard
        return contextlib.nullcontext() if guard is None else guard.hold()

    @property
    def backprop_state(self) -> bool:
        """Whether state keeps its autograd history from one call to the next.

        ``False`` (the default): state is stored detached, so backward never reaches
        an earlier call. ``True``: gradients flow across calls until `detach_state()`
        cuts the history (truncated backpropagation through time). Setting it sets
        it on every nested graph too.
        """
        return self._backprop_state

    @backprop_state.setter
    def backprop_state(self, keep: bool) -> None:
        for module in self.modules():
            if isinstance(module, GraphState):
                module._backprop_state = bool(keep)

    def reset_state(self) -> None:
        """Forget all forward-reference state, here and in nested graphs.

        The next call reads initial values (zeros unless declared), as a first call does.
        """
        with self._locked():
            for module in self.modules():
                if isinstance(module, GraphState):
                    for cell in module._plan.cells.values():
                        cell.value = None

    def detach_state(self) -> None:
        """Cut the autograd history of all state, keeping its values; recursive.

        Graphs store state detached unless ``backprop_state`` is set, so this
        matters for those graphs, and for nested modules with their own
        ``detach_state()`` method, which it calls too.
        """
        with self._locked():
            self._detach_cells()
        for module in self.modules():
            if module is not self and not isinstance(module, GraphState):
                method = getattr(module, "detach_state", None)
                if callable(method):
                    method()

    def _detach_cells(self) -> None:
        for module in self.modules():
            if isinstance(module, GraphState):
                for cell in module._plan.cells.values():
                    if cell.value is not None:
                        cell.value = detach(cell.value)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> GraphState:
        """Move state with the parameters on ``.to()``, ``.double()``, ``.cuda()``..."""
        super()._apply(fn, recurse)  # type: ignore[no-untyped-call]
        with self._locked():
            for cell in self._plan.cells.values():
                if cell.value is not None:
                    cell.value = map_tensors(fn, cell.value)
        # The declared initial values moved with the buffers; a recompiled plan reads them.
        self._sync_inits()
        return self
