"""What the machine is doing: CPU load, memory, and GPU memory when CUDA is in use."""

from __future__ import annotations

import math
from types import ModuleType

import torch

# Resource figures, in the order of the CSV columns. GPU figures exist only on CUDA.
RESOURCE_NAMES = (
    "cpu_percent",
    "ram_percent",
    "ram_used_bytes",
    "process_rss_bytes",
    "gpu_allocated_bytes",
    "gpu_reserved_bytes",
)


class ResourceSampler:
    """Samples resource figures, once per epoch.

    ``cpu_percent`` is the whole machine's CPU use (0–100) averaged since the
    previous sample, so it covers the epoch, data-loader worker processes included;
    ``ram_percent`` and ``ram_used_bytes`` the machine's memory in use;
    ``process_rss_bytes`` this process' resident memory. ``gpu_allocated_bytes`` and
    ``gpu_reserved_bytes`` (PyTorch's caching allocator, current device) appear only
    when CUDA is available *and* already initialised: sampling never starts CUDA.

    Example:
        >>> figures = ResourceSampler().sample()
        >>> 0 <= figures["cpu_percent"] <= 100 and figures["ram_used_bytes"] > 0
        True
    """

    def __init__(self) -> None:
        self._psutil = _psutil()
        self._process = self._psutil.Process()
        self._last_cpu = _busy_and_total()

    def sample(self) -> dict[str, float]:
        """The figures now (CPU use since the previous sample)."""
        busy, total = _busy_and_total()
        last_busy, last_total = self._last_cpu
        self._last_cpu = (busy, total)
        elapsed = total - last_total
        cpu = 100.0 * (busy - last_busy) / elapsed if elapsed > 0 else 0.0
        memory = self._psutil.virtual_memory()
        figures = {
            "cpu_percent": min(100.0, max(0.0, cpu)),
            "ram_percent": float(memory.percent),
            "ram_used_bytes": float(memory.total - memory.available),
            "process_rss_bytes": float(self._process.memory_info().rss),
        }
        figures.update(gpu_memory())
        return figures


def gpu_memory() -> dict[str, float]:
    """PyTorch's allocated and reserved CUDA memory, or nothing when CUDA is not in use.

    Example:
        >>> import torch
        >>> gpu_memory() if not torch.cuda.is_available() else {}
        {}
    """
    if not (torch.cuda.is_available() and torch.cuda.is_initialized()):  # type: ignore[no-untyped-call]
        return {}
    return {
        "gpu_allocated_bytes": float(torch.cuda.memory_allocated()),
        "gpu_reserved_bytes": float(torch.cuda.memory_reserved()),
    }


def format_bytes(count: float) -> str:
    """A byte count in binary units: ``512 B``, ``1.5 KiB``, ``3.2 GiB``.

    Example:
        >>> [format_bytes(n) for n in (512, 1536, 3.2 * 2**30, 0)]
        ['512 B', '1.5 KiB', '3.2 GiB', '0 B']
    """
    if not math.isfinite(count):
        return "?"
    units = ("B", "KiB", "MiB", "GiB", "TiB")
    value, index = float(count), 0
    while abs(value) >= 1024 and index < len(units) - 1:
        value /= 1024
        index += 1
    return f"{value:.0f} B" if index == 0 else f"{value:.1f} {units[index]}"


def format_resource(name: str, value: float) -> str:
    """One resource figure as people read it.

    Example:
        >>> format_resource("cpu_percent", 37.26), format_resource("ram_used_bytes", 2**31)
        ('37%', '2.0 GiB')
    """
    if name.endswith("_percent"):
        return f"{value:.0f}%"
    return format_bytes(value)


def _busy_and_total() -> tuple[float, float]:
    times = _psutil().cpu_times()
    total = sum(times)
    # guest time is already counted in user time on Linux
    total -= getattr(times, "guest", 0.0) + getattr(times, "guest_nice", 0.0)
    idle = times.idle + getattr(times, "iowait", 0.0)
    return total - idle, total


def _psutil() -> ModuleType:
    """psutil, loaded when resources are first sampled rather than by `import flowdl`."""
    import psutil

    return psutil
