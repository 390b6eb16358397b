"""One logged epoch, and how it travels: a CSV row, an event for the dashboard."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from flowdl._format import format_duration, format_metric
from flowdl._monitor.resources import format_resource


@dataclass(frozen=True)
class EpochRecord:
    """What the monitor knows about one epoch.

    Attributes:
        epoch: the epoch number, 1-based (as shown; see `flowdl._monitor.numbering`).
        duration: seconds since the previous log (or since the monitor started).
        elapsed: seconds since the monitor started.
        eta: the estimated seconds left in the run, ``None`` when unknown.
        metrics: ``{name: value}``, in the order the sources gave them.
        resources: resource figures (see `flowdl._monitor.resources.ResourceSampler`).
    """

    epoch: int
    duration: float
    elapsed: float
    eta: float | None
    metrics: dict[str, float] = field(default_factory=dict)
    resources: dict[str, float] = field(default_factory=dict)

    def row(self) -> dict[str, float]:
        """The record as one flat row: ``epoch``, ``duration_s``, ``elapsed_s``, ``eta_s``,
        the metrics, then the resources (the CSV's and `Monitor.history`'s layout).

        Example:
            >>> EpochRecord(2, 1.5, 3.0, 4.5, {"loss": 0.25}).row()
            {'epoch': 2, 'duration_s': 1.5, 'elapsed_s': 3.0, 'eta_s': 4.5, 'loss': 0.25}
        """
        row: dict[str, float] = {
            "epoch": self.epoch,
            "duration_s": self.duration,
            "elapsed_s": self.elapsed,
        }
        if self.eta is not None:
            row["eta_s"] = self.eta
        row.update(self.metrics)
        row.update(self.resources)
        return row

    def event(self, total_epochs: int) -> dict[str, Any]:
        """The record as the dashboard receives it: JSON-ready numbers (``None`` for
        NaN and infinities) and the same numbers written for people.

        Example:
            >>> event = EpochRecord(1, 0.25, 0.25, None, {"loss": float("nan")}).event(3)
            >>> event["metrics"], event["text"]["metrics"], event["text"]["duration"]
            ({'loss': None}, {'loss': 'nan'}, '250ms')
        """
        return {
            "epoch": self.epoch,
            "total": total_epochs,
            "duration": _json_number(self.duration),
            "elapsed": _json_number(self.elapsed),
            "eta": None if self.eta is None else _json_number(self.eta),
            "names": list(self.metrics),
            "metrics": {name: _json_number(value) for name, value in self.metrics.items()},
            "resources": {name: _json_number(value) for name, value in self.resources.items()},
            "text": {
                "duration": format_duration(self.duration),
                "elapsed": format_duration(self.elapsed),
                "eta": "" if self.eta is None else format_duration(self.eta),
                "metrics": {name: format_metric(value) for name, value in self.metrics.items()},
                "resources": {
                    name: format_resource(name, value) for name, value in self.resources.items()
                },
            },
        }


def _json_number(value: float) -> float | None:
    return value if math.isfinite(value) else None
