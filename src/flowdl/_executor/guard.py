"""`StateGuard`: the calls of a graph that holds state (its own or a nested graph's).

Three rules make state exact, and the guard keeps them:

- **One call at a time.** Calls from several threads read and write the same state,
  so they are serialised by a re-entrant lock: 10,000 increments from four threads
  give 10,000. (Graphs without state are not locked: threads run them concurrently.)
- **One tape per call.** State passed from one call of a nested graph to the next
  *within one call of the enclosing graph* (the iterations of a recurrent loop body)
  stays on the autograd tape, so gradients equal those of the unrolled network;
  what crosses calls of the outermost graph is detached unless ``backprop_state``.
  The outermost call marks the nested graphs as enclosed while it runs.
- **Checkpointing advances state once.** Under `torch.utils.checkpoint` (both
  modes) the forward is run again during backward. The first run records the state
  it read; the recomputation reads that state again and writes none, so the state
  advances once per step and the recomputed values equal the original ones.
"""

from __future__ import annotations

import enum
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import Any, Protocol

import torch
from torch import Tensor

from flowdl._context import Context
from flowdl._errors import GraphError
from flowdl._executor.state import StateCell, detach

__all__ = ["Phase", "StateGuard", "checkpoint_phase"]

MAX_PENDING = 4096
"""Recorded checkpointed calls kept per input, awaiting their recomputation; older
ones are dropped (a checkpointed forward whose backward never comes)."""


class Phase(enum.Enum):
    """Where a call stands with respect to activation checkpointing."""

    PLAIN = "plain"
    FORWARD = "forward"
    """The first run of a checkpointed forward."""
    RECOMPUTE = "recompute"
    """The run of the same forward during backward."""


def _called_by_checkpoint(depth: int = 8) -> bool:
    """Whether `torch.utils.checkpoint` is among the nearest callers of the graph's
    forward (directly, or through a module or two that call the graph)."""
    frame: FrameType | None = sys._getframe(4)  # the caller of Module.__call__
    for _ in range(depth):
        if frame is None:
            return False
        if frame.f_globals.get("__name__") == "torch.utils.checkpoint":
            return True
        frame = frame.f_back
    return False


def checkpoint_phase() -> Phase:
    """The phase of the current call: a training call costs three cheap checks.

    A checkpointed forward runs without grad (``use_reentrant=True``) or under
    saved-tensor hooks (``use_reentrant=False``); its recomputation runs inside
    backward. Only then are the callers looked at. Under inference mode nothing
    can be checkpointed.
    """
    in_backward = torch._C._current_graph_task_id() != -1
    if not in_backward:
        if torch.is_grad_enabled():
            if torch._C._autograd._top_saved_tensors_default_hooks(False) is None:
                return Phase.PLAIN
        elif torch.is_inference_mode_enabled():
            return Phase.PLAIN
    if not _called_by_checkpoint():
        return Phase.PLAIN
    return Phase.RECOMPUTE if in_backward else Phase.FORWARD


class GuardedGraph(Protocol):
    """What the guard needs from a graph (`GraphCore`)."""

    _backprop_state: bool

    def _run(self, inputs: tuple[Any, ...], ctx: Context | None) -> Any: ...


class StateGuard:
    """The lock, the enclosure and the checkpoint records of one graph with state.

    Args:
        cells: the state cells of the graph and of every graph nested in it.
        nested: ``(guard, own cells, backprop flag owner)`` for each nested graph
            with state, outermost first.
    """

    __slots__ = ("cells", "enclosed", "lock", "nested", "pending")

    def __init__(
        self,
        cells: Sequence[StateCell],
        nested: Sequence[tuple[StateGuard, tuple[StateCell, ...], GuardedGraph]],
    ) -> None:
        self.lock = threading.RLock()
        self.cells = tuple(cells)
        self.nested = tuple(nested)
        self.enclosed = 0
        """How many calls of enclosing graphs are running this graph's calls."""
        self.pending: dict[tuple[Any, ...], list[list[Any]]] = {}

    def refresh(
        self,
        cells: Sequence[StateCell],
        nested: Sequence[tuple[StateGuard, tuple[StateCell, ...], GuardedGraph]],
    ) -> None:
        """The graph's cells or nested graphs changed (a replacement): keep the lock."""
        self.cells = tuple(cells)
        self.nested = tuple(nested)

    def __getstate__(self) -> dict[str, Any]:
        # Copies get a lock of their own and no pending checkpoint records.
        return {"cells": self.cells, "nested": self.nested}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.lock = threading.RLock()
        self.cells = state["cells"]
        self.nested = state["nested"]
        self.enclosed = 0
        self.pending = {}

    def call(self, graph: GuardedGraph, inputs: tuple[Any, ...], ctx: Context | None) -> Any:
        """Run `graph` on `inputs` under the three rules."""
        with self.lock:
            if self.enclosed:  # the enclosing call keeps the rules
                return graph._run(inputs, ctx)
            phase = checkpoint_phase()
            if phase is Phase.RECOMPUTE:
                return self._recompute(graph, inputs, ctx)
            if phase is Phase.FORWARD:
                waiting = self.pending.setdefault(_key(inputs), [])
                waiting.append([cell.value for cell in self.cells])
                del waiting[:-MAX_PENDING]
            return self._enclosing(graph, inputs, ctx)

    def _enclosing(self, graph: GuardedGraph, inputs: tuple[Any, ...], ctx: Context | None) -> Any:
        nested = self.nested
        for guard, _, _ in nested:
            guard.enclosed += 1
        try:
            out = graph._run(inputs, ctx)
        finally:
            for guard, _, _ in nested:
                guard.enclosed -= 1
        # What crosses calls of the outermost graph leaves the tape (unless kept).
        for _, cells, owner in nested:
            if not owner._backprop_state:
                for cell in cells:
                    if cell.value is not None:
                        cell.value = detach(cell.value)
        return out

    def _recompute(self, graph: GuardedGraph, inputs: tuple[Any, ...], ctx: Context | None) -> Any:
        key = _key(inputs)
        waiting = self.pending.get(key)
        if not waiting:
            raise GraphError(
                "activation checkpointing recomputes a call of this graph whose forward "
                "was not recorded, so the state it read is unknown",
                expected="torch.utils.checkpoint.checkpoint(graph, *inputs) called on the "
                "graph (or on a module calling it) in the forward pass",
                received="a recomputation during backward with no matching forward",
                fix="checkpoint the graph in the forward pass, with the same inputs",
            )
        before = waiting.pop()
        if not waiting:
            del self.pending[key]
        after = [cell.value for cell in self.cells]
        for cell, value in zip(self.cells, before, strict=True):
            cell.value = value
        try:
            return self._enclosing(graph, inputs, ctx)
        finally:  # the state stays where the forward left it
            for cell, value in zip(self.cells, after, strict=True):
                cell.value = value


def _key(inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """The inputs as the recomputation will see them: the same tensors, or (reentrant
    mode) detached views of the same memory."""
    return tuple(
        (x.data_ptr(), tuple(x.shape), x.dtype) if isinstance(x, Tensor) else id(x) for x in inputs
    )
