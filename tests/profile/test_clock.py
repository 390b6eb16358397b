"""The clocks: perf_counter on the CPU; on CUDA, events and one synchronisation per forward.

No GPU is needed: CUDA's events and streams are replaced by fakes that read a fake
time, which checks what the CUDA clock does (where it records, when it waits, how
it converts) without a device.
"""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
from torch import nn

import flowdl as fl
from flowdl._profile import clock as clock_module
from flowdl._profile import runner
from flowdl._profile.clock import CpuClock, CudaClock, clock_for


class FakeTime:
    now = 0.0


class FakeStream:
    device = torch.device("cuda", 0)


class FakeEvent:
    """A timing event that reads `FakeTime` when recorded."""

    log: ClassVar[list[str]] = []

    def __init__(self, enable_timing: bool = False) -> None:
        assert enable_timing
        self.time: float | None = None

    def record(self, stream: Any = None) -> None:
        assert isinstance(stream, FakeStream)
        self.time = FakeTime.now

    def synchronize(self) -> None:
        FakeEvent.log.append("synchronize")

    def elapsed_time(self, end: FakeEvent) -> float:
        assert "synchronize" in FakeEvent.log, "elapsed_time before the GPU finished"
        assert self.time is not None
        assert end.time is not None
        return (end.time - self.time) * 1000.0  # milliseconds, as CUDA reports them


@pytest.fixture
def fake_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeTime.now = 0.0
    FakeEvent.log = []
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: FakeStream())


class Tick(nn.Module):
    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        FakeTime.now += self.seconds
        return x


class CudaLooking(torch.Tensor):
    """A CPU tensor that says it is on a CUDA device."""

    @property
    def is_cuda(self) -> bool:  # type: ignore[override]
        return True


def test_the_clock_follows_the_first_tensor_input(fake_cuda: None) -> None:
    assert isinstance(clock_for([torch.zeros(1)]), CpuClock)
    assert isinstance(clock_for([3, None]), CpuClock)
    cuda = clock_for([2, torch.zeros(1).as_subclass(CudaLooking)])
    assert isinstance(cuda, CudaClock)
    assert cuda.device == "cuda:0"
    assert isinstance(
        clock_for([torch.zeros(1), torch.zeros(1).as_subclass(CudaLooking)]), CpuClock
    )


def test_cuda_clock_converts_milliseconds_and_waits_once(fake_cuda: None) -> None:
    clock = CudaClock(torch.device("cuda", 0))
    a = clock.mark()
    FakeTime.now = 0.25
    b = clock.mark()
    clock.finish()
    assert FakeEvent.log == ["synchronize"]
    assert clock.seconds(a, b) == pytest.approx(0.25)


def test_a_profiled_forward_on_cuda_uses_events_only(
    fake_cuda: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_host_clock() -> float:
        raise AssertionError("the host clock was read on CUDA")

    monkeypatch.setattr("time.perf_counter", no_host_clock)
    monkeypatch.setattr(runner, "clock_for", lambda inputs: CudaClock(torch.device("cuda", 0)))
    g = fl.Flow(Tick(0.5)).split(Tick(1.0), Tick(2.0)).merge(fl.Add()).tag("sum").build()
    g.enable_profiling()
    g(torch.ones(1))
    assert FakeEvent.log == ["synchronize"]  # one wait, after the last node
    p = g.profile()
    assert p is not None
    assert p.device == "cuda:0"
    assert [(n.id, n.seconds) for n in p.nodes] == [
        ("Tick_0", 0.5),
        ("Tick_1", 1.0),
        ("Tick_2", 2.0),
        ("Add_0", 0.0),
    ]
    assert [(lv.index, lv.wall_seconds, lv.n_nodes) for lv in p.levels] == [
        (1, 0.5, 1),
        (2, 3.0, 2),
        (3, 0.0, 1),
    ]
    assert p.total_seconds == pytest.approx(3.5)
    assert "on cuda:0" in str(p)


def test_cpu_clock_reads_perf_counter(monkeypatch: pytest.MonkeyPatch) -> None:
    times = iter([1.0, 1.5])
    monkeypatch.setattr(clock_module.time, "perf_counter", lambda: next(times))
    clock = CpuClock()
    a, b = clock.mark(), clock.mark()
    clock.finish()
    assert clock.seconds(a, b) == 0.5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_on_a_real_gpu() -> None:
    g = fl.Flow(nn.Linear(64, 64)).through(nn.GELU()).tag("act").build().cuda()
    g.enable_profiling()
    g(torch.randn(32, 64, device="cuda"))
    p = g.profile()
    assert p is not None
    assert p.device.startswith("cuda")
    assert all(n.seconds > 0 for n in p.nodes)
    assert g.timing("act") > 0
