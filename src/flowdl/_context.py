"""Cancellation and deadlines for forward calls: `fl.Context`."""

from __future__ import annotations

import threading
import time
from contextvars import ContextVar

from flowdl._errors import Cancelled, DeadlineExceeded

__all__ = ["Context", "current_context"]


class Context:
    """Bounds a forward call in time and lets another thread cancel it.

    The graph checks the context between nodes (and, for loops and maps, between
    iterations); nested graphs see the context of the call that runs them. A
    stopped call raises `fl.Cancelled` or `fl.DeadlineExceeded` and leaves the
    graph usable: its forward-reference state is that of the last completed call.

    The clock starts when the context is created, so one context can bound several
    calls (a whole evaluation pass, say).

    Args:
        timeout: seconds from now after which calls under this context stop.
        deadline: an absolute time on the `time.monotonic()` clock. When both are
            given, the earlier one wins.

    Raises:
        ValueError: a negative timeout, or a timeout or deadline that is not a number.

    Example:
        >>> import flowdl as fl, torch
        >>> from torch import nn
        >>> g = fl.Flow(nn.Linear(4, 4)).through(nn.ReLU()).build()
        >>> ctx = fl.Context(timeout=5.0)
        >>> g(torch.randn(2, 4), ctx=ctx).shape
        torch.Size([2, 4])
        >>> ctx.cancel()
        >>> g(torch.randn(2, 4), ctx=ctx)
        Traceback (most recent call last):
        ...
        flowdl._errors.Cancelled: the forward call was cancelled (ctx.cancel() was called)
    """

    __slots__ = ("_cancelled", "_deadline")

    def __init__(self, timeout: float | None = None, deadline: float | None = None) -> None:
        limits: list[float] = []
        if timeout is not None:
            if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
                raise ValueError(
                    f"fl.Context(timeout=...) must be a number of seconds; "
                    f"received {type(timeout).__name__} {timeout!r}"
                )
            if timeout < 0:
                raise ValueError(
                    f"fl.Context(timeout=...) must be >= 0 seconds; received timeout={timeout}"
                )
            limits.append(time.monotonic() + float(timeout))
        if deadline is not None:
            if isinstance(deadline, bool) or not isinstance(deadline, (int, float)):
                raise ValueError(
                    "fl.Context(deadline=...) must be a time.monotonic() timestamp; "
                    f"received {type(deadline).__name__} {deadline!r}"
                )
            limits.append(float(deadline))
        self._deadline: float | None = min(limits) if limits else None
        self._cancelled = threading.Event()

    @property
    def deadline(self) -> float | None:
        """The absolute `time.monotonic()` time at which calls stop, or ``None``."""
        return self._deadline

    @property
    def remaining(self) -> float | None:
        """Seconds left before the deadline (never negative), or ``None`` without one."""
        if self._deadline is None:
            return None
        return max(0.0, self._deadline - time.monotonic())

    @property
    def cancelled(self) -> bool:
        """Whether `cancel()` was called."""
        return self._cancelled.is_set()

    def cancel(self) -> None:
        """Stop every call running under this context at its next check. Thread-safe."""
        self._cancelled.set()

    def check(self) -> None:
        """Raise `Cancelled` or `DeadlineExceeded` if the call must stop; else return.

        Raises:
            Cancelled: `cancel()` was called.
            DeadlineExceeded: the deadline has passed.
        """
        if self._cancelled.is_set():
            raise Cancelled("the forward call was cancelled (ctx.cancel() was called)")
        deadline = self._deadline
        if deadline is not None and time.monotonic() >= deadline:
            late = time.monotonic() - deadline
            raise DeadlineExceeded(
                f"the forward call ran past its deadline ({late * 1e3:.1f} ms late); "
                "give fl.Context a longer timeout or make the model faster"
            )

    def __repr__(self) -> str:
        parts = []
        if self._deadline is not None:
            parts.append(f"remaining={self.remaining:.3f}s")
        if self.cancelled:
            parts.append("cancelled")
        return f"Context({', '.join(parts)})"


_current: ContextVar[Context | None] = ContextVar("flowdl_context", default=None)


def current_context() -> Context | None:
    """The context of the forward call running in this thread, if any.

    Nested graphs, loops and maps read it, so a context given to the outer call
    reaches every node beneath it.
    """
    return _current.get()
