"""A monitor's history in a checkpoint: `fl.save_checkpoint(..., monitor=m)` and back.

The logged epochs (their numbers, durations, elapsed times, ETAs, metrics and
resources) and the monitor's clock, kept relative to its start, so that a monitor
restored in a resumed run prints, serves and exports the whole run, and its ETA goes
on from the epochs already timed. The time between the save and the load does not
count.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flowdl._eta import EtaEstimator
from flowdl._monitor.record import EpochRecord

if TYPE_CHECKING:
    from flowdl._monitor.monitor import Monitor

__all__ = ["monitor_state", "prepare_restore"]


def monitor_state(monitor: Monitor) -> dict[str, Any]:
    """The monitor's history as JSON-ready data (floats may be NaN or infinite)."""
    with monitor._lock:
        records = list(monitor._records)
        now = monitor._clock()
        started, last = monitor._started, monitor._last_time
    return {
        "first": monitor._numbering.first,  # the run counts epochs from 0 or 1
        "elapsed": now - started,
        "since_last": now - last,
        "records": [
            {
                "epoch": r.epoch,
                "duration": r.duration,
                "elapsed": r.elapsed,
                "eta": r.eta,
                "metrics": dict(r.metrics),
                "resources": dict(r.resources),
            }
            for r in records
        ],
    }


def prepare_restore(monitor: Monitor, state: Any) -> Callable[[], None]:
    """Check `state` (from `monitor_state`) against `monitor`; return what restores it.

    Raises:
        ValueError: `state` is malformed, its epochs do not fit `monitor`, or `monitor`
            has logged epochs already or has finished.
    """
    if monitor.finished or monitor.history:
        raise ValueError(
            "the monitor has logged epochs already: restore its history into a new "
            "fl.Monitor, before its first log()"
        )
    if not isinstance(state, dict) or set(state) - {"first"} != {
        "elapsed",
        "since_last",
        "records",
    }:
        raise ValueError("the monitor's history is not {first, elapsed, since_last, records}")
    first = state.get("first", 1)
    if first not in (0, 1, None) or isinstance(first, bool):
        raise ValueError(f"the monitor's first epoch is 0, 1 or null, not {first!r}")
    if not (_finite(state["elapsed"]) and _finite(state["since_last"])):
        raise ValueError("the monitor's clock is not a pair of numbers")
    if not isinstance(state["records"], list):
        raise ValueError("the monitor's records are not a list")
    records = [_record(item, i) for i, item in enumerate(state["records"])]
    previous = 0
    for record in records:
        if not previous < record.epoch <= monitor.total_epochs:
            raise ValueError(
                f"the monitor's history logs epoch {record.epoch} after {previous}; this "
                f"monitor runs epochs 1 to {monitor.total_epochs}"
            )
        previous = record.epoch
    elapsed, since_last = float(state["elapsed"]), float(state["since_last"])

    def restore() -> None:
        eta = EtaEstimator()
        previous = 0
        for record in records:
            eta.add(record.duration / (record.epoch - previous))
            previous = record.epoch
        with monitor._lock:
            now = monitor._clock()
            monitor._records = list(records)
            monitor._eta = eta
            monitor._started = now - elapsed
            monitor._last_time = now - since_last
            monitor._numbering.resume(1 if first is None else first, previous or None)
        for record in records:
            monitor._hub.add_epoch(record.event(monitor.total_epochs))

    return restore


def _record(item: Any, index: int) -> EpochRecord:
    at = f"the monitor's record {index}"
    fields = {"epoch", "duration", "elapsed", "eta", "metrics", "resources"}
    if not isinstance(item, dict) or set(item) != fields:
        raise ValueError(f"{at} is not {{{', '.join(sorted(fields))}}}")
    epoch = item["epoch"]
    if isinstance(epoch, bool) or not isinstance(epoch, int):
        raise ValueError(f"{at}: the epoch is not an integer")
    if not (_finite(item["duration"]) and _finite(item["elapsed"])):
        raise ValueError(f"{at}: duration and elapsed are not numbers")
    if not (item["eta"] is None or _number(item["eta"])):
        raise ValueError(f"{at}: eta is not a number")
    for part in ("metrics", "resources"):
        values = item[part]
        if not (isinstance(values, dict) and all(_number(v) for v in values.values())):
            raise ValueError(f"{at}: {part} is not a dict of numbers")
    return EpochRecord(
        epoch=epoch,
        duration=float(item["duration"]),
        elapsed=float(item["elapsed"]),
        eta=None if item["eta"] is None else float(item["eta"]),
        metrics={k: float(v) for k, v in item["metrics"].items()},
        resources={k: float(v) for k, v in item["resources"].items()},
    )


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return _number(value) and math.isfinite(value)
