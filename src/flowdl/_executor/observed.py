"""`Observed`: what a graph's last call computed for its tags, kept per thread."""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["Observed"]


class _PerThread(threading.local):
    def __init__(self) -> None:
        self.values: list[Any] = []


class Observed:
    """The tag values of the last call of the current thread (empty before any call).

    Two threads calling one graph each read their own call's values after it, never
    the other thread's. A parent graph empties the values of the graphs nested in
    it at the start of each of its calls, so a nested graph that did not run in a
    call (a switch branch not taken, a sparse expert without samples) reports
    nothing rather than the values of an older call. Copies and pickles start empty.

    Traced code (a graph inside ``torch.compile``) cannot write per-thread storage,
    so a traced call publishes its values for every thread, until the next eager
    call.

    Example:
        >>> seen = Observed()
        >>> seen.publish([1.0])
        >>> seen.values
        [1.0]
    """

    __slots__ = ("_local", "_traced")

    def __init__(self) -> None:
        self._local = _PerThread()
        self._traced: list[Any] | None = None

    @property
    def values(self) -> list[Any]:
        """The values of the last call, one per tag in the plan's order."""
        traced = self._traced
        return self._local.values if traced is None else traced

    def publish(self, values: list[Any]) -> None:
        """Keep `values` as this thread's last call's."""
        self._local.values = values
        self._traced = None

    def publish_traced(self, values: list[Any]) -> None:
        """Keep the values of a traced call (see the class)."""
        self._traced = values

    def __reduce__(self) -> tuple[type[Observed], tuple[()]]:
        return Observed, ()
