"""Resource figures: present and sane on CPU; GPU memory read only when CUDA is in use."""

from __future__ import annotations

import io

import psutil
import pytest
import torch

import flowdl as fl
from flowdl._monitor import resources
from flowdl._monitor.resources import ResourceSampler, format_bytes, format_resource


def test_figures_are_present_and_sane() -> None:
    sampler = ResourceSampler()
    sum(i * i for i in range(200_000))  # some CPU work between two samples
    figures = sampler.sample()
    assert 0.0 <= figures["cpu_percent"] <= 100.0
    assert 0.0 < figures["ram_percent"] <= 100.0
    total = psutil.virtual_memory().total
    assert 0 < figures["ram_used_bytes"] <= total
    assert 0 < figures["process_rss_bytes"] <= total
    assert figures["process_rss_bytes"] >= 10 * 2**20  # Python with torch loaded


def test_no_gpu_figures_without_cuda_in_use() -> None:
    if torch.cuda.is_available() and torch.cuda.is_initialized():  # type: ignore[no-untyped-call]
        pytest.skip("CUDA is in use on this machine")
    assert "gpu_allocated_bytes" not in ResourceSampler().sample()


def test_gpu_figures_when_cuda_is_in_use(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda: 3 * 2**20)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda: 8 * 2**20)
    assert resources.gpu_memory() == {
        "gpu_allocated_bytes": 3.0 * 2**20,
        "gpu_reserved_bytes": 8.0 * 2**20,
    }
    stream = io.StringIO()
    monitor = fl.Monitor(2, output=stream)
    monitor.log(1, {"loss": 0.5})
    assert stream.getvalue().rstrip().endswith("gpu 3.0 MiB / 8.0 MiB reserved")
    assert monitor.history[0]["gpu_reserved_bytes"] == 8.0 * 2**20


def test_cuda_is_never_started_by_sampling(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)

    def forbidden() -> int:
        raise AssertionError("memory_allocated would initialise CUDA")

    monkeypatch.setattr(torch.cuda, "memory_allocated", forbidden)
    assert resources.gpu_memory() == {}


def test_resources_can_be_turned_off() -> None:
    monitor = fl.Monitor(2, output=io.StringIO(), resources=False)
    monitor.log(1)
    assert set(monitor.history[0]) == {"epoch", "duration_s", "elapsed_s", "eta_s"}


def test_formatting() -> None:
    assert [format_bytes(n) for n in (0, 1023, 1024, 5 * 2**30, 2**50)] == [
        "0 B",
        "1023 B",
        "1.0 KiB",
        "5.0 GiB",
        "1024.0 TiB",
    ]
    assert format_resource("ram_percent", 49.6) == "50%"
    assert format_bytes(float("nan")) == "?"
