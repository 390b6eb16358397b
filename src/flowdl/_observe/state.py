"""What a graph keeps for observation: its metric stores, its clock and its hooks.

Created on first use, so a graph nobody observes carries none of it. It is not
part of the model: not in ``state_dict()``, and copies and pickles of a graph
start without it (see ``Graph.__getstate__``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from flowdl._observe.clock import Clock
from flowdl._observe.store import MetricStore

__all__ = ["OBSERVATION_ATTRIBUTES", "FlushHook", "LogHook", "Observation", "ObservationState"]

LogHook = Callable[[dict[str, Any]], Any]
"""Receives ``{tag: tagged value}`` from `Graph.log`."""

FlushHook = Callable[[dict[str, float]], Any]
"""Receives ``{name: epoch mean}`` from `Graph.flush`."""

OBSERVATION_ATTRIBUTES = ("_observation", "_clock_start")
"""The graph attributes holding observation state: dropped by copies and pickles."""


class Observation:
    """One graph's observation state.

    Attributes:
        store: collected and recorded values (`Graph.collect`, `Graph.record`).
        timings: node durations in seconds (`Graph.collect_timings`).
        timed_profile: the profile `timings` last read, and `timed_tags` the tags
            read from it: a profile counts once per tag.
    """

    __slots__ = (
        "clock",
        "flush_hook",
        "log_hook",
        "store",
        "timed_profile",
        "timed_tags",
        "timings",
    )

    def __init__(self) -> None:
        self.store = MetricStore()
        self.timings = MetricStore()
        self.clock = Clock()
        self.log_hook: LogHook | None = None
        self.flush_hook: FlushHook | None = None
        self.timed_profile: object | None = None
        self.timed_tags: set[str] = set()


class ObservationState:
    """Base of the observation mixins: reaching a graph's `Observation`, and its clock."""

    _clock_start: float | None = None
    """`time.monotonic()` of the first forward; set by `Graph.forward`."""

    def _start_clock(self) -> None:
        self.__dict__["_clock_start"] = time.monotonic()

    def _observation_state(self) -> Observation:
        """This graph's observation state, created on first use."""
        observation: Observation | None = self.__dict__.get("_observation")
        if observation is None:
            observation = Observation()
            self.__dict__["_observation"] = observation
        return observation

    def _begin_clock(self, now: float | None = None) -> Observation:
        """The observation state, with the clock started (at the first forward, or now)."""
        observation = self._observation_state()
        if observation.clock.start is None:
            if self._clock_start is None:
                self.__dict__["_clock_start"] = time.monotonic() if now is None else now
            observation.clock.start = self._clock_start
        return observation

    def _metric_store(self) -> MetricStore:
        """The store of this graph's metrics, created on first use."""
        return self._observation_state().store

    def _existing_store(self) -> MetricStore | None:
        """The store of this graph's metrics, or ``None`` if nothing was ever observed."""
        observation: Observation | None = self.__dict__.get("_observation")
        return observation.store if observation is not None else None

    def _existing_timing_store(self) -> MetricStore | None:
        """The store of this graph's node timings, or ``None`` if nothing was ever observed."""
        observation: Observation | None = self.__dict__.get("_observation")
        return observation.timings if observation is not None else None
