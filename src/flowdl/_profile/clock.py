"""The clocks of a profiled forward: ``time.perf_counter`` on the CPU, CUDA events on a GPU.

A clock hands out *marks* (indices) during the run and turns pairs of marks into
seconds afterwards, in `finish`. On CUDA, kernels run asynchronously: reading a
host clock between nodes would time the kernel launches, not the kernels. So the
CUDA clock records an event on the device's current stream at each mark, and waits
for the GPU only once, after the last node, before reading the elapsed times. A
node's time is then the time between its two events on the stream: its kernels,
and any time the stream sat idle waiting for the host to launch them. Work a node
puts on other streams is not covered.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Protocol

import torch
from torch import Tensor


class Clock(Protocol):
    """What the profiled loop needs from a clock."""

    device: str

    def mark(self) -> int:
        """Record the time now; returns the mark's index."""
        ...

    def finish(self) -> None:
        """Wait until every mark has its time (a no-op on the CPU)."""
        ...

    def seconds(self, start: int, end: int) -> float:
        """The seconds between two marks (after `finish`)."""
        ...


class CpuClock:
    """``time.perf_counter`` at each mark."""

    device = "cpu"

    def __init__(self) -> None:
        self._times: list[float] = []

    def mark(self) -> int:
        self._times.append(time.perf_counter())
        return len(self._times) - 1

    def finish(self) -> None:
        pass

    def seconds(self, start: int, end: int) -> float:
        return self._times[end] - self._times[start]


class CudaClock:
    """A timing CUDA event on the device's current stream at each mark."""

    def __init__(self, device: torch.device) -> None:
        self._stream = torch.cuda.current_stream(device)
        self.device = str(self._stream.device)
        self._events: list[Any] = []

    def mark(self) -> int:
        event = torch.cuda.Event(enable_timing=True)  # type: ignore[no-untyped-call]
        event.record(self._stream)
        self._events.append(event)
        return len(self._events) - 1

    def finish(self) -> None:
        if self._events:
            self._events[-1].synchronize()  # the one host sync of a profiled forward

    def seconds(self, start: int, end: int) -> float:
        milliseconds: float = self._events[start].elapsed_time(self._events[end])
        return milliseconds / 1000.0


def clock_for(inputs: Sequence[Any]) -> Clock:
    """CUDA events when the first tensor among the graph's inputs is on a CUDA device,
    else the CPU clock."""
    for value in inputs:
        if isinstance(value, Tensor):
            if value.is_cuda:
                return CudaClock(value.device)
            break
    return CpuClock()
