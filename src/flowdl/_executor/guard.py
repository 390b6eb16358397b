"""`StateGuard`: the calls of a graph that holds state (its own or a nested graph's).

Three rules make state exact, and the guard keeps them:

- **One call at a time.** Calls from several threads read and write the same state,
  so a call holds the re-entrant locks of its graph *and of every graph nested in
  it*, taken in one global order (no deadlock): a nested graph shared by two graphs,
  or also called directly, is never run by two threads at once. 1,000 increments
  from four threads give 1,000. (Graphs without state are not locked.)
- **One tape per call.** State passed from one call of a nested graph to the next
  *within one call of the enclosing graph* (the iterations of a recurrent loop body)
  stays on the autograd tape, so gradients equal those of the unrolled network;
  what crosses calls of the outermost graph is detached unless ``backprop_state``.
  The outermost call marks the nested graphs as enclosed while it runs (also when
  traced by ``torch.compile``).
- **Checkpointing advances state once.** Under `torch.utils.checkpoint` (both
  modes) the forward is run again during backward. The first run records the state
  it read; the recomputation reads that state again, writes none, and leaves the
  observation of the last call (tags, loop counts) as it was.
"""

from __future__ import annotations

import contextlib
import enum
import itertools
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from types import FrameType
from typing import Any, Protocol

import torch
from torch import Tensor

from flowdl._context import Context
from flowdl._errors import GraphError
from flowdl._executor.observed import Observed
from flowdl._executor.state import StateCell, detach

__all__ = ["Phase", "StateGuard", "checkpoint_phase"]

MAX_PENDING = 4096
"""Recorded checkpointed calls kept per graph, awaiting their recomputation; the
oldest are dropped beyond it (checkpointed forwards whose backward never comes)."""

MAX_DEPTH = 64
"""How many callers `checkpoint_phase` looks at, at most."""

_ORDER = itertools.count()
"""Creation order of the guards: the order in which a call takes their locks."""

# The three checks of a training call (`checkpoint_phase`), bound once: `StateGuard.call`
# makes them itself, without a call of `checkpoint_phase`, for every call of a nested graph.
_graph_task_id = torch._C._current_graph_task_id
_saved_tensor_hooks = torch._C._autograd._top_saved_tensors_default_hooks
_grad_enabled = torch.is_grad_enabled


class Phase(enum.Enum):
    """Where a call stands with respect to activation checkpointing."""

    PLAIN = "plain"
    FORWARD = "forward"
    """The first run of a checkpointed forward."""
    RECOMPUTE = "recompute"
    """The run of the same forward during backward."""
    REENTRANT = "reentrant"
    """The first run of a forward checkpointed with ``use_reentrant=True`` (without grad)."""


def _checkpoint_caller() -> str | None:
    """The function of `torch.utils.checkpoint` that called this graph (through any
    modules), or ``None``; also ``None`` when an enclosing graph's call is nearer (it
    keeps the rules for its nested graphs)."""
    frame: FrameType | None = sys._getframe(4)  # Module.__call__ of this graph
    for _ in range(MAX_DEPTH):
        if frame is None:
            return None
        module = frame.f_globals.get("__name__")
        if module == "torch.utils.checkpoint":
            return frame.f_code.co_name
        if module == "flowdl._executor.core" and frame.f_code.co_name == "_run":
            return None  # an enclosing graph's call, nearer than any checkpoint
        frame = frame.f_back
    return None


def checkpoint_phase() -> Phase:
    """The phase of the current call: a training call costs three cheap checks.

    A checkpointed forward runs without grad inside ``CheckpointFunction.forward``
    (``use_reentrant=True``) or under saved-tensor hooks (``use_reentrant=False``;
    without grad it checkpoints nothing); its recomputation runs inside backward.
    Only then are the callers looked at. Under inference mode nothing can be
    checkpointed.
    """
    in_backward = torch._C._current_graph_task_id() != -1
    hooked = False
    if not in_backward:
        if torch.is_grad_enabled():
            hooked = torch._C._autograd._top_saved_tensors_default_hooks(False) is not None
            if not hooked:
                return Phase.PLAIN
        elif torch.is_inference_mode_enabled():
            return Phase.PLAIN
    caller = _checkpoint_caller()
    if caller is None:
        return Phase.PLAIN
    if in_backward:
        return Phase.RECOMPUTE
    if hooked:
        return Phase.FORWARD
    return Phase.REENTRANT if caller == "forward" else Phase.PLAIN


class GuardedGraph(Protocol):
    """What the guard needs from a graph (`GraphCore`)."""

    _backprop_state: bool

    def _run(self, inputs: tuple[Any, ...], ctx: Context | None) -> Any: ...


Nested = tuple["StateGuard", tuple[StateCell, ...], GuardedGraph]
"""A nested graph with state: its guard, its own cells, the graph."""


class StateGuard:
    """The locks, the enclosure and the checkpoint records of one graph with state.

    Args:
        cells: the state cells of the graph and of every graph nested in it.
        nested: `Nested` for each nested graph with state.
        observed: what the graph and its nested graphs observe (tags), and
        loops: the loops in them (counts, traces): a recomputation leaves both as
            the last call left them.
    """

    __slots__ = (
        "cells",
        "enclosed",
        "lock",
        "locks",
        "loops",
        "nested",
        "observed",
        "order",
        "pending",
        "recorded",
    )

    def __init__(
        self,
        cells: Sequence[StateCell],
        nested: Sequence[Nested],
        observed: Sequence[Observed] = (),
        loops: Sequence[Any] = (),
    ) -> None:
        self.lock = threading.RLock()
        self.order = next(_ORDER)
        self.enclosed = 0
        """How many calls of enclosing graphs are running this graph's calls."""
        self.pending: OrderedDict[tuple[Any, ...], list[list[Any]]] = OrderedDict()
        self.recorded = 0
        """How many records `pending` holds, over all its inputs."""
        self.refresh(cells, nested, observed, loops)

    def refresh(
        self,
        cells: Sequence[StateCell],
        nested: Sequence[Nested],
        observed: Sequence[Observed] = (),
        loops: Sequence[Any] = (),
    ) -> None:
        """The graph's cells or nested graphs changed (a replacement): keep the lock."""
        self.cells = tuple(cells)
        self.nested = tuple(nested)
        self.observed = tuple(observed)
        self.loops = tuple(loops)
        guards = sorted({id(g): g for g, _, _ in self.nested}.values(), key=lambda g: g.order)
        self.locks = tuple(g.lock for g in sorted([self, *guards], key=lambda g: g.order))

    def __getstate__(self) -> dict[str, Any]:
        # Copies get locks of their own and no pending checkpoint records.
        return {k: getattr(self, k) for k in ("cells", "nested", "observed", "loops")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.lock = threading.RLock()
        self.order = next(_ORDER)
        self.enclosed = 0
        self.pending = OrderedDict()
        self.recorded = 0
        self.refresh(state["cells"], state["nested"], state["observed"], state["loops"])

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        """Hold the locks of the graph and of its nested graphs with state."""
        taken: list[Any] = []
        try:
            for lock in self.locks:
                lock.acquire()
                taken.append(lock)
            yield
        finally:
            for lock in reversed(taken):
                lock.release()

    def call(self, graph: GuardedGraph, inputs: tuple[Any, ...], ctx: Context | None) -> Any:
        """Run `graph` on `inputs` under the three rules."""
        locks = self.locks
        for lock in locks:  # plain calls, not `hold()`: a generator costs a microsecond
            lock.acquire()
        try:
            if _graph_task_id() == -1 and _grad_enabled() and _saved_tensor_hooks(False) is None:
                # A training call: `checkpoint_phase`'s first three checks, inline.
                if self.enclosed:  # the enclosing call keeps the rules
                    return graph._run(inputs, ctx)
                return self.enclosing(graph, inputs, ctx)
            phase = checkpoint_phase()
            if phase is Phase.RECOMPUTE:
                return self._recompute(graph, inputs, ctx)
            if phase is Phase.REENTRANT and (self.enclosed or graph._backprop_state):
                raise _reentrant_error(bool(self.enclosed))
            if phase is Phase.FORWARD or phase is Phase.REENTRANT:
                self._record(inputs)
            if self.enclosed:  # the enclosing call keeps the rules
                return graph._run(inputs, ctx)
            return self.enclosing(graph, inputs, ctx)
        finally:
            for lock in reversed(locks):
                lock.release()

    def enclosing(self, graph: GuardedGraph, inputs: tuple[Any, ...], ctx: Context | None) -> Any:
        """Run `graph` as the outermost call: nested state on the tape, detached after."""
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

    def _record(self, inputs: tuple[Any, ...]) -> None:
        pending = self.pending
        key = _key(inputs)
        pending.setdefault(key, []).append([cell.value for cell in self.cells])
        pending.move_to_end(key)
        self.recorded += 1
        if self.recorded > MAX_PENDING:  # drop the oldest record of the oldest input
            oldest = next(iter(pending))
            del pending[oldest][0]
            self.recorded -= 1
            if not pending[oldest]:
                del pending[oldest]

    def _recompute(self, graph: GuardedGraph, inputs: tuple[Any, ...], ctx: Context | None) -> Any:
        key = _key(inputs)
        waiting = self.pending.get(key)
        if not waiting:
            raise GraphError(
                "activation checkpointing recomputes a call of this graph whose forward "
                "is not recorded (any more), so the state it read is unknown",
                expected="one recomputation per checkpointed forward, with the same inputs",
                received="a recomputation during backward with no matching forward: a "
                "second backward through the same checkpointed call (retain_graph=True), "
                f"or a forward older than the last {MAX_PENDING} recorded",
                fix="backward once per checkpointed call of a graph with state, or "
                "checkpoint a module without state around it",
            )
        before = waiting.pop()
        self.recorded -= 1
        if not waiting:
            del self.pending[key]
        after = [cell.value for cell in self.cells]
        seen = [o.values for o in self.observed]
        counts = [(loop._last.batch, loop._last.counts, loop._last.traces) for loop in self.loops]
        for cell, value in zip(self.cells, before, strict=True):
            cell.value = value
        try:
            return self.enclosing(graph, inputs, ctx)
        finally:  # state and observation stay where the last call left them
            for cell, value in zip(self.cells, after, strict=True):
                cell.value = value
            for observed, values in zip(self.observed, seen, strict=True):
                observed.publish(values)
            for loop, (batch, n, traces) in zip(self.loops, counts, strict=True):
                loop._last.batch, loop._last.counts, loop._last.traces = batch, n, traces


def _reentrant_error(enclosed: bool) -> GraphError:
    where = (
        "a graph nested in another graph's call, whose state goes on the tape from one of "
        "its calls to the next"
        if enclosed
        else "a graph with backprop_state = True, whose state keeps its history across calls"
    )
    return GraphError(
        "torch.utils.checkpoint with use_reentrant=True runs its forward without grad, so "
        f"the state of {where} would lose its gradient",
        expected="use_reentrant=False for a graph whose state carries gradients",
        received="checkpoint(..., use_reentrant=True)",
        fix="call torch.utils.checkpoint.checkpoint(module, x, use_reentrant=False)",
    )


def _key(inputs: tuple[Any, ...]) -> tuple[Any, ...]:
    """The inputs as the recomputation will see them: the same tensors, or (reentrant
    mode) detached views of the same memory."""
    return tuple(
        (x.data_ptr(), tuple(x.shape), x.dtype) if isinstance(x, Tensor) else id(x) for x in inputs
    )
