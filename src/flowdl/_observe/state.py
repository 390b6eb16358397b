"""What a graph keeps for observation: its metric store, its clock and its hooks.

Created on first use, so a graph nobody observes carries none of it. It is not
part of the model: not in ``state_dict()``, and copies and pickles of a graph
start without it (see ``Graph.__getstate__``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flowdl._observe.clock import Clock
from flowdl._observe.store import MetricStore

__all__ = ["OBSERVATION_ATTRIBUTES", "FlushHook", "LogHook", "Observation"]

LogHook = Callable[[dict[str, Any]], Any]
"""Receives ``{tag: tagged value}`` from `Graph.log`."""

FlushHook = Callable[[dict[str, float]], Any]
"""Receives ``{name: epoch mean}`` from `Graph.flush`."""

OBSERVATION_ATTRIBUTES = ("_observation", "_clock_start")
"""The graph attributes holding observation state: dropped by copies and pickles."""


class Observation:
    """One graph's observation state."""

    __slots__ = ("clock", "flush_hook", "log_hook", "store")

    def __init__(self) -> None:
        self.store = MetricStore()
        self.clock = Clock()
        self.log_hook: LogHook | None = None
        self.flush_hook: FlushHook | None = None
