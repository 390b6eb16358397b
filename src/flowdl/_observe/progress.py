"""Progress, part of the observation feature: the wall clock of training, the training
log, the CSV of trends, the curves page."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import ClassVar

from flowdl._executor.core import GraphCore
from flowdl._files import write_text_atomic
from flowdl._observe.export import csv_text, log_text
from flowdl._observe.state import observation_of, observation_state, start_time
from flowdl._observe.store import select_series
from flowdl._observe.tree_metrics import tree_groups, tree_histories
from flowdl._web.curves import write_curves_page

# The graph attribute holding the marks of `Progress.mark`.
_MARKS = "_marks"

__all__ = ["Progress"]


class Progress(GraphCore):
    """`flush_count`, `elapsed`, `eta`, `export_trends`, `write_log`, `mark`, `plot_html`."""

    _transient: ClassVar[tuple[str, ...]] = (_MARKS,)

    @property
    def flush_count(self) -> int:
        """How many flushes produced data in this graph's tree (epochs done)."""
        observation = observation_of(self)
        return observation.clock.count if observation is not None else 0

    @property
    def elapsed(self) -> float:
        """Seconds since training started (the first forward); 0.0 before it."""
        start = start_time(self)
        return 0.0 if start is None else time.monotonic() - start

    def eta(self, total_epochs: int) -> float:
        """Seconds left to reach `total_epochs` flushes, from the epochs so far.

        The estimated duration of one epoch times the epochs left, by flowdl's one
        ETA rule (`flowdl._eta`, which `fl.Monitor` uses too): the first epoch is
        left out once a later one is known (it pays warm-up and compilation), and
        the estimate is a trimmed mean of the last ten. 0.0 before the first flush
        and once `total_epochs` are done. `flowdl._format.format_duration` writes
        it for people.

        Args:
            total_epochs: the epochs the run will have (flushes).

        Returns:
            the estimate, in seconds.

        Raises:
            ValueError: `total_epochs` is not a positive int.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Identity()).build()
            >>> g.eta(10), g.flush_count
            (0.0, 0)
            >>> _ = g(torch.ones(1)); g.record("loss", 1.0); _ = g.flush()
            >>> g.flush_count, g.eta(10) >= 0.0, g.eta(1)
            (1, True, 0.0)
        """
        if isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < 1:
            raise ValueError(f"g.eta(total_epochs={total_epochs!r}): expected an int >= 1")
        observation = observation_of(self)
        return observation.clock.eta(total_epochs) if observation is not None else 0.0

    # ------------------------------------------------------------- exports

    def _series(self, names: tuple[str, ...], what: str) -> list[tuple[str, list[float]]]:
        """The series of `names` (default: all, sorted) for plots and exports."""
        return select_series(tree_histories(self), tree_groups(self), names, what=what)

    def export_trends(self, path: str | os.PathLike[str], *names: str) -> Path:
        """Write histories as CSV: ``epoch,<name>,...``, one row per epoch (1-based).

        Names as in `latest_metrics` (default: every metric with a history, sorted);
        tag groups are expanded; names without a history are skipped. Row ``i``
        holds the ``i``-th value of each history, written ``%.8g``; a shorter
        history leaves empty cells. The file is written whole or not at all.

        Args:
            path: the CSV file to write.
            *names: tags, metrics, tag groups or paths; none for every history.

        Returns:
            the path written.

        Raises:
            ValueError: no history to export (call `flush` first).

        Example:
            >>> import tempfile, pathlib, torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Identity()).build()
            >>> for loss in (0.5, 0.25):
            ...     g.record("loss", loss); _ = g.flush()
            >>> out = g.export_trends(pathlib.Path(tempfile.mkdtemp()) / "trends.csv")
            >>> print(out.read_text(), end="")
            epoch,loss
            1,0.5
            2,0.25
        """
        return write_text_atomic(path, csv_text(self._series(names, "export")))

    def write_log(self, path: str | os.PathLike[str], total_epochs: int = 0, *names: str) -> Path:
        """Write the training log: a header, then one line per epoch with its metrics,
        its duration and the time left.

        ``epoch   3  loss=0.1234  acc=0.9000  [1.2s  ETA 8.4s]``: values written by
        `flowdl._format.format_metric`, durations by `format_duration`; the ETA
        appears when `total_epochs` > 0. Names as for `export_trends`.

        Args:
            path: the log file to write.
            total_epochs: the run's length, for the ETA; 0 to leave it out.
            *names: as for `export_trends`.

        Returns:
            the path written.

        Raises:
            ValueError: no history to log (call `flush` first), or a negative
                `total_epochs`.

        Example:
            >>> import tempfile, pathlib, torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Identity()).build()
            >>> g.record("loss", 0.5); _ = g.flush()
            >>> log = g.write_log(pathlib.Path(tempfile.mkdtemp()) / "train.log", 10)
            >>> log.read_text().splitlines()[1].startswith("epoch   1  loss=0.5000")
            True
        """
        if isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < 0:
            raise ValueError(
                f"g.write_log(path, total_epochs={total_epochs!r}): expected an int >= 0 "
                "(0: no ETA)"
            )
        series = self._series(names, "log")
        clock = observation_state(self).clock
        return write_text_atomic(path, log_text(series, clock, total_epochs))

    def mark(self, text: str, epoch: int | None = None) -> None:
        """Note an event (a trend decision, a change of learning rate) on the curves page.

        `plot_html` draws each mark as a dashed line at its epoch on every chart, with
        `text` beside it and in the hover tooltip. Marks are not part of the model (not
        in ``state_dict()``; copies start without them).

        Args:
            text: what happened, e.g. ``"val_loss stalled: lr / 2"``.
            epoch: the epoch (1-based); by default the last flushed one (`flush_count`).

        Raises:
            ValueError: no epoch given and nothing flushed yet, or `epoch` < 1.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Identity()).build()
            >>> g.record("val_loss", 0.5); _ = g.flush()
            >>> g.mark("val_loss stalled: lr / 2")
            >>> g.marks
            [(1, 'val_loss stalled: lr / 2')]
        """
        at = self.flush_count if epoch is None else epoch
        if isinstance(at, bool) or not isinstance(at, int) or at < 1:
            raise ValueError(
                f"g.mark({text!r}, epoch={epoch!r}): expected an int epoch >= 1"
                + (" (nothing flushed yet: flush first or pass epoch=)" if epoch is None else "")
            )
        self.__dict__.setdefault(_MARKS, []).append((at, str(text)))

    @property
    def marks(self) -> list[tuple[int, str]]:
        """The ``(epoch, text)`` marks noted by `mark`, in the order noted."""
        return list(self.__dict__.get(_MARKS, []))

    def plot_html(
        self,
        path: str | os.PathLike[str],
        *names: str,
        marks: Sequence[tuple[int, str]] | None = None,
    ) -> Path:
        """Write the "Training Curves" page: one chart per history, over the epochs.

        One self-contained HTML file of about 30 KB that works offline (the charts are
        drawn by flowdl's own small SVG renderer inlined into the page; it loads nothing
        from the network). Each history has its own chart and value axis; losses start on
        a log scale and every chart has a log toggle; dragging, the wheel or the range
        buttons zoom all charts at once; hovering shows the epoch and value; `marks`
        (default: those noted with `mark`) are dashed lines at their epochs; a table
        gives each series' last, lowest and highest value. Names as for `export_trends`
        (default: every history of the tree, sorted; tag groups expanded; names
        without a history skipped). Written whole or not at all.

        Args:
            path: the HTML file to write.
            *names: the histories to draw (default: all).
            marks: ``(epoch, text)`` pairs to draw instead of those noted with `mark`.

        Returns:
            the path written.

        Raises:
            ValueError: no history to plot (call `flush` first).

        Example:
            >>> import tempfile, pathlib, torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Identity()).build()
            >>> for loss in (0.9, 0.5, 0.4):
            ...     g.record("loss", loss); _ = g.flush()
            >>> page = g.plot_html(pathlib.Path(tempfile.mkdtemp()) / "curves.html")
            >>> "<title>Training Curves</title>" in page.read_text()
            True
        """
        shown = self.marks if marks is None else list(marks)
        series = dict(self._series(names, "plot"))
        return write_curves_page(path, series, "Training Curves", marks=shown)
