"""The training log (goDl §6.5) and the trends CSV (goDl §6.4), as text."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime

from flowdl._format import format_duration, format_metric
from flowdl._observe.clock import Clock

__all__ = ["csv_text", "log_text"]

Series = Sequence[tuple[str, Sequence[float]]]


def csv_text(series: Series) -> str:
    """``epoch,<name>,...`` then one row per epoch (1-based), values as ``%.8g``.

    A series shorter than the longest leaves its cells empty.

    Example:
        >>> print(csv_text([("loss", [0.5, 0.25]), ("acc", [0.125])]), end="")
        epoch,loss,acc
        1,0.5,0.125
        2,0.25,
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["epoch", *(name for name, _ in series)])
    epochs = max((len(values) for _, values in series), default=0)
    for i in range(epochs):
        writer.writerow(
            [str(i + 1), *(f"{values[i]:.8g}" if i < len(values) else "" for _, values in series)]
        )
    return out.getvalue()


def log_text(series: Series, clock: Clock, total_epochs: int) -> str:
    """The training log: a header line, then one line per epoch.

    Each epoch line is ``epoch %3d``, then ``  <name>=<value>`` for each series that
    has a value for that epoch (`format_metric`), then, when the epoch's flush was
    timed and took some time, ``  [<duration>`` and ``  ETA <remaining>`` (when
    `total_epochs` > 0 and time remains) and ``]``. The remaining time after epoch
    ``i`` (1-based) is what `Clock.eta` said then (flowdl's one ETA rule).

    Example:
        >>> clock = Clock(start=0.0)
        >>> clock.epoch_ended(now=1.5); clock.epoch_ended(now=3.5)
        >>> text = log_text([("loss", [0.5, 0.25]), ("acc", [0.125])], clock, total_epochs=4)
        >>> print(text.split("\\n", 1)[1], end="")
        epoch   1  loss=0.5000  acc=0.1250  [1.5s  ETA 4.5s]
        epoch   2  loss=0.2500  [2.0s  ETA 4.0s]
    """
    when = clock.first_end_wall
    stamp = datetime.fromtimestamp(when) if when is not None else datetime.now()
    lines = [f"# flowdl training log — {stamp.astimezone().isoformat(timespec='seconds')}"]
    durations = clock.epoch_durations()
    epochs = max((len(values) for _, values in series), default=0)
    for i in range(epochs):
        parts = [f"epoch {i + 1:3d}"]
        parts += [f"{name}={format_metric(v[i])}" for name, v in series if i < len(v)]
        line = "  ".join(parts)
        if i < len(durations) and durations[i] > 0 and clock.start is not None:
            line += f"  [{format_duration(durations[i])}"
            remaining = clock.eta_after(i + 1, total_epochs)
            if total_epochs > 0 and remaining > 0:
                line += f"  ETA {format_duration(remaining)}"
            line += "]"
        lines.append(line)
    return "\n".join(lines) + "\n"
