"""The monitor's CSV: one row per logged epoch, one column per figure ever logged."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from flowdl._monitor.record import EpochRecord
from flowdl._monitor.resources import RESOURCE_NAMES


def csv_columns(records: Sequence[EpochRecord]) -> list[str]:
    """The header: ``epoch, duration_s, elapsed_s, eta_s``, every metric in the order it
    first appeared, then the resource figures any epoch has.

    Example:
        >>> records = [EpochRecord(1, 1.0, 1.0, 2.0, {"loss": 0.5}),
        ...            EpochRecord(2, 1.0, 2.0, 1.0, {"accuracy": 0.75, "loss": 0.25})]
        >>> csv_columns(records)
        ['epoch', 'duration_s', 'elapsed_s', 'eta_s', 'loss', 'accuracy']
    """
    metrics: dict[str, None] = {}
    resources: set[str] = set()
    for record in records:
        metrics.update(dict.fromkeys(record.metrics))
        resources.update(record.resources)
    ordered = [name for name in RESOURCE_NAMES if name in resources]
    return ["epoch", "duration_s", "elapsed_s", "eta_s", *metrics, *ordered]


def csv_text(records: Sequence[EpochRecord]) -> str:
    """The CSV of `records`: a header, then one row per epoch.

    A figure an epoch does not have (a metric logged only from some epoch on, or
    no longer logged) is an empty cell. Numbers are written in full precision
    (Python's ``repr``), NaN as ``nan``. Lines end with ``\\r\\n`` as RFC 4180 says,
    so a name holding a line break is quoted and reads back whole.

    Example:
        >>> records = [EpochRecord(1, 1.5, 1.5, 3.0, {"loss": 0.5}),
        ...            EpochRecord(2, 1.5, 3.0, 1.5, {"accuracy": 0.75})]
        >>> print(csv_text(records).replace("\\r\\n", "\\n"), end="")
        epoch,duration_s,elapsed_s,eta_s,loss,accuracy
        1,1.5,1.5,3.0,0.5,
        2,1.5,3.0,1.5,,0.75
    """
    columns = csv_columns(records)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for record in records:
        row = record.row()
        writer.writerow([_cell(row.get(column)) for column in columns])
    return buffer.getvalue()


def _cell(value: float | None) -> str:
    if value is None:
        return ""
    if isinstance(value, int):
        return str(value)
    return repr(float(value))
