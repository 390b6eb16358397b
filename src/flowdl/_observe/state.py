"""What a graph keeps for observation: its metric stores, its clock and its hooks.

Created on first use, so a graph nobody observes carries none of it. It is not
part of the model: not in ``state_dict()``, and copies and pickles of a graph
start without it (the observation feature declares it transient). The functions
here reach the state of any graph of a tree, the way every observation method does.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from torch.utils.hooks import RemovableHandle

from flowdl._executor.core import GraphCore
from flowdl._observe.clock import Clock
from flowdl._observe.store import MetricStore

__all__ = [
    "OBSERVATION",
    "FlushHook",
    "Hooks",
    "LogHook",
    "ObservationState",
    "add_hook",
    "begin_clock",
    "observation_of",
    "observation_state",
    "start_time",
    "timings_of",
    "values_of",
]

LogHook = Callable[[dict[str, Any]], Any]
"""Receives ``{tag: tagged value}`` from `Graph.log`."""

FlushHook = Callable[[dict[str, float]], Any]
"""Receives ``{name: epoch mean}`` from `Graph.flush`."""

Hooks = OrderedDict[int, Any]
"""Registered hooks by handle id, in registration order (as torch keeps its hooks)."""

OBSERVATION = "_observation"
"""The graph attribute holding its `ObservationState`."""


class ObservationState:
    """One graph's observation state.

    Attributes:
        store: collected and recorded values (`Graph.collect`, `Graph.record`).
        timings: node durations in seconds (`Graph.collect_timings`).
        clock: when training started and each epoch ended.
        log_hooks: where `Graph.log` sends values, in registration order (none:
            stderr).
        flush_hooks: called in registration order after each `Graph.flush` that
            produced data here.
        timed_profile: the profile `timings` last read, and `timed_tags` the tags
            read from it: a profile counts once per tag.
    """

    __slots__ = (
        "clock",
        "flush_hooks",
        "log_hooks",
        "store",
        "timed_profile",
        "timed_tags",
        "timings",
    )

    def __init__(self) -> None:
        self.store = MetricStore()
        self.timings = MetricStore()
        self.clock = Clock()
        self.log_hooks: Hooks = OrderedDict()
        self.flush_hooks: Hooks = OrderedDict()
        self.timed_profile: object | None = None
        self.timed_tags: set[str] = set()


def add_hook(hooks: Hooks, hook: object, call: str, receives: str) -> RemovableHandle:
    """Register `hook` after those in `hooks`; the handle's ``remove()`` takes it out.

    ``None`` removes every hook (the handle returned then does nothing).

    Raises:
        TypeError: `hook` is neither callable nor ``None``.
    """
    if hook is None:
        hooks.clear()
        return RemovableHandle(OrderedDict())
    if not callable(hook):
        raise TypeError(
            f"{call} takes a function called with {receives} (or None to remove every "
            f"hook); received {type(hook).__name__} {hook!r}"
        )
    handle = RemovableHandle(hooks)
    hooks[handle.id] = hook
    return handle


def observation_of(graph: GraphCore) -> ObservationState | None:
    """`graph`'s observation state, or ``None`` if nothing was ever observed there."""
    state = graph.__dict__.get(OBSERVATION)
    return state if isinstance(state, ObservationState) else None


def observation_state(graph: GraphCore) -> ObservationState:
    """`graph`'s observation state, created on first use."""
    state = observation_of(graph)
    if state is None:
        state = ObservationState()
        graph.__dict__[OBSERVATION] = state
    return state


def begin_clock(graph: GraphCore, now: float | None = None) -> ObservationState:
    """The observation state, with the clock started: at the graph's first forward, or
    now (for a graph that observes without running eagerly)."""
    state = observation_state(graph)
    if state.clock.start is None:
        first = graph._first_call
        state.clock.start = (
            first if first is not None else (time.monotonic() if now is None else now)
        )
    return state


def start_time(graph: GraphCore) -> float | None:
    """When training started for `graph` (`time.monotonic()`), or ``None`` before it."""
    state = observation_of(graph)
    if state is not None and state.clock.start is not None:
        return state.clock.start
    return graph._first_call


def values_of(graph: GraphCore) -> MetricStore | None:
    """The store of `graph`'s collected and recorded values, if it has one."""
    state = observation_of(graph)
    return state.store if state is not None else None


def timings_of(graph: GraphCore) -> MetricStore | None:
    """The store of `graph`'s node timings, if it has one."""
    state = observation_of(graph)
    return state.timings if state is not None else None
