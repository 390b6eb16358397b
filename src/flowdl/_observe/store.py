"""`MetricStore`: per-name batch buffers and per-name epoch histories; series selection.

A graph keeps one store for its observations (``collect``/``record``/``flush``);
the same class serves any other per-epoch series (timings, say). Values are
buffered as they come, as Python floats or detached one-element tensors (on any
device), and turned into numbers only at `MetricStore.means`, with one device-to-host
copy per device, so buffering never waits for the device.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import torch
from torch import Tensor

from flowdl._observe.trend import exact_sum

__all__ = ["MetricStore", "select_series"]

BufferedValue = float | Tensor
"""A buffered value: a float, or a detached tensor with one element."""


class MetricStore:
    """Batch buffers (values of the current epoch) and histories (one mean per epoch).

    Example:
        >>> store = MetricStore()
        >>> for v in (2.0, 4.0, 6.0):
        ...     store.add("loss", v)
        >>> store.add("acc", torch.tensor(0.5))
        >>> store.flush()
        {'loss': 4.0, 'acc': 0.5}
        >>> store.history("loss"), store.buffered_names()
        ([4.0], [])
    """

    __slots__ = ("_buffers", "_histories", "_known")

    def __init__(self) -> None:
        self._buffers: dict[str, list[BufferedValue]] = {}
        self._histories: dict[str, list[float]] = {}
        self._known: dict[str, None] = {}

    # --------------------------------------------------------------- buffers

    def add(self, name: str, value: BufferedValue) -> None:
        """Buffer one value of `name` for the current epoch (a float or a 1-element tensor)."""
        self._known[name] = None
        self._buffers.setdefault(name, []).append(value)

    def buffered(self, name: str) -> list[float]:
        """The values buffered for `name` this epoch, as floats (reads tensors: a host sync)."""
        values = self._buffers.get(name, [])
        return _to_floats(values)

    def buffered_names(self) -> list[str]:
        """Names with buffered values, in the order they were first buffered."""
        return list(self._buffers)

    def means(self, names: Iterable[str] | None = None) -> dict[str, float]:
        """The mean of each buffer of `names` (default: all), without flushing.

        Names without buffered values are left out. All tensors are read with one
        device-to-host copy per device.
        """
        wanted = list(self._buffers) if names is None else [n for n in names if n in self._buffers]
        flat = [v for n in wanted for v in self._buffers[n]]
        numbers = iter(_to_floats(flat))
        means = {}
        for name in wanted:
            values = [next(numbers) for _ in self._buffers[name]]
            means[name] = exact_sum(values) / len(values)
        return means

    def discard(self, names: Iterable[str]) -> None:
        """Empty the buffers of `names`."""
        for name in names:
            self._buffers.pop(name, None)

    # ------------------------------------------------------------- histories

    def append(self, means: Mapping[str, float]) -> None:
        """Append each mean to its name's history."""
        for name, mean in means.items():
            self._known[name] = None
            self._histories.setdefault(name, []).append(float(mean))

    def flush(self, names: Iterable[str] | None = None) -> dict[str, float]:
        """End the epoch for `names` (default: every buffered name): means -> histories.

        Returns:
            ``{name: mean}`` for the names that had buffered values; names without
            any are skipped and other buffers are kept.
        """
        means = self.means(names)
        self.append(means)
        self.discard(means)
        return means

    def history(self, name: str) -> list[float]:
        """A copy of the history of `name` (empty if it has none)."""
        return list(self._histories.get(name, ()))

    def histories(self) -> dict[str, list[float]]:
        """A copy of every non-empty history, by name."""
        return {name: list(values) for name, values in self._histories.items() if values}

    def reset(self, names: Iterable[str] | None = None) -> None:
        """Forget the histories of `names` (default: all); buffers are kept."""
        if names is None:
            self._histories.clear()
            return
        for name in names:
            self._histories.pop(name, None)

    # ------------------------------------------------------------------ names

    def remember(self, name: str) -> None:
        """Know `name` (as if it had been buffered), without a value: for a restored run."""
        self._known[name] = None

    def knows(self, name: str) -> bool:
        """Whether `name` was ever buffered or given a history (reset or not)."""
        return name in self._known

    def known_names(self) -> list[str]:
        """Every name ever buffered or given a history, in first-seen order."""
        return list(self._known)


def _to_floats(values: Sequence[BufferedValue]) -> list[float]:
    """Floats of `values`; the tensors among them read with one copy per device.

    Tensors of one device and dtype are stacked together (no per-value kernels), then
    each device's stacks are joined in float64 and copied to the host once.
    """
    out: list[float] = [0.0] * len(values)
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for i, value in enumerate(values):
        if isinstance(value, Tensor):
            groups.setdefault((value.device, value.dtype), []).append(i)
        else:
            out[i] = float(value)
    by_device: dict[torch.device, list[tuple[list[int], Tensor]]] = {}
    for (device, _), indices in groups.items():
        parts = [values[i] for i in indices]
        if all(part.dim() == 0 for part in parts):  # type: ignore[union-attr]
            stacked = torch.stack(parts)  # type: ignore[arg-type]
        else:
            stacked = torch.cat([part.reshape(1) for part in parts])  # type: ignore[union-attr]
        by_device.setdefault(device, []).append((indices, stacked))
    for stacks in by_device.values():
        joined = torch.cat([stacked.to(torch.float64) for _, stacked in stacks]).tolist()
        position = 0
        for indices, _ in stacks:
            for i in indices:
                out[i] = float(joined[position])
                position += 1
    return out


def select_series(
    histories: Mapping[str, Sequence[float]],
    groups: Mapping[str, Sequence[str]],
    names: Sequence[str] = (),
    *,
    what: str = "export",
    data: str = "epoch data",
    hint: str = "call flush() first",
) -> list[tuple[str, list[float]]]:
    """The series to plot or export, by goDl's rules.

    No `names`: every series with a history, sorted by name. With `names`: in the
    order given, each group name replaced by its members, duplicates dropped, and
    names without a history skipped.

    Args:
        histories: ``{name: values}``.
        groups: ``{group name: member names}``.
        names: the names asked for (may be empty).
        what: the verb for the error message (``"plot"``, ``"export"``, ``"log"``).
        data: what is missing, for the error message.
        hint: how to get some, for the error message.

    Returns:
        ``[(name, values), ...]``, at least one.

    Raises:
        ValueError: no series has any value.

    Example:
        >>> select_series({"b": [1.0], "a": [2.0], "head_0": [3.0]}, {"head": ["head_0"]})
        [('a', [2.0]), ('b', [1.0]), ('head_0', [3.0])]
        >>> select_series({"b": [1.0], "head_0": [3.0]}, {"head": ["head_0", "head_1"]},
        ...               ["head", "b", "missing"])
        [('head_0', [3.0]), ('b', [1.0])]
    """
    if names:
        wanted: dict[str, None] = {}
        for name in names:
            for member in groups.get(name, (name,)):
                wanted[member] = None
        order = list(wanted)
    else:
        order = sorted(histories)
    series = [(name, list(histories[name])) for name in order if histories.get(name)]
    if not series:
        asked = f" for {', '.join(repr(n) for n in names)}" if names else ""
        raise ValueError(f"no {data} to {what}{asked} ({hint})")
    return series
