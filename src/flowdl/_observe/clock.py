"""The wall clock of training: when it started and when each epoch ended (goDl §4.3).

Training starts at the graph's first forward (or at its first ``collect``,
``record`` or ``flush``, for a graph that observes without running, or whose
forward only ever ran compiled). Each flush that produced data ends an epoch.
"""

from __future__ import annotations

import time

from flowdl._eta import EtaEstimator

__all__ = ["Clock"]


class Clock:
    """Start time and epoch ends, in `time.monotonic` seconds.

    Example:
        >>> clock = Clock(start=100.0)
        >>> clock.epoch_ended(now=110.0); clock.epoch_ended(now=130.0)
        >>> clock.count, clock.eta(10), clock.epoch_durations()
        (2, 160.0, [10.0, 20.0])
    """

    __slots__ = ("ends", "first_end_wall", "start")

    def __init__(self, start: float | None = None) -> None:
        self.start = start
        self.ends: list[float] = []
        self.first_end_wall: float | None = None

    def begin(self, now: float | None = None) -> None:
        """Start the clock if it has not started."""
        if self.start is None:
            self.start = time.monotonic() if now is None else now

    def epoch_ended(self, now: float | None = None) -> None:
        """Record the end of an epoch (a flush that produced data)."""
        now = time.monotonic() if now is None else now
        self.begin(now)
        if not self.ends:
            self.first_end_wall = time.time()
        self.ends.append(now)

    @property
    def count(self) -> int:
        """How many epochs ended."""
        return len(self.ends)

    def elapsed(self, now: float | None = None) -> float:
        """Seconds since the start (0.0 before it)."""
        if self.start is None:
            return 0.0
        return (time.monotonic() if now is None else now) - self.start

    def eta(self, total_epochs: int) -> float:
        """Seconds left for `total_epochs`, by flowdl's one ETA rule (`flowdl._eta`).

        The estimated epoch duration (the first epoch left out once a later one is
        known, a trimmed mean of the recent ones) times the epochs left; 0.0 before
        the first epoch ends and once `total_epochs` have ended.
        """
        return self.eta_after(len(self.ends), total_epochs)

    def eta_after(self, done: int, total_epochs: int) -> float:
        """What `eta` said when only the first `done` epochs had ended."""
        estimator = EtaEstimator()
        for seconds in self.epoch_durations()[:done]:
            estimator.add(seconds)
        return estimator.remaining(total_epochs - done) or 0.0

    def epoch_durations(self) -> list[float]:
        """Duration of each epoch: the first from the start, the others between ends."""
        if self.start is None:
            return []
        starts = [self.start, *self.ends[:-1]]
        return [end - begin for begin, end in zip(starts, self.ends, strict=True)]
