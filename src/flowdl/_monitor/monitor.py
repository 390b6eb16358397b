"""`fl.Monitor`: one line per epoch, a live dashboard, and exports of the run."""

from __future__ import annotations

import datetime
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TextIO

from flowdl._errors import render_message
from flowdl._eta import EtaEstimator
from flowdl._files import write_text_atomic
from flowdl._format import format_duration
from flowdl._monitor.addresses import is_loopback
from flowdl._monitor.export import csv_text
from flowdl._monitor.hub import EventHub
from flowdl._monitor.notebook import NotebookDisplay, in_notebook
from flowdl._monitor.numbering import EpochNumbering
from flowdl._monitor.page import dashboard_page
from flowdl._monitor.record import EpochRecord
from flowdl._monitor.resources import ResourceSampler
from flowdl._monitor.resume import monitor_state, prepare_restore
from flowdl._monitor.sources import collect_metrics
from flowdl._monitor.step_bar import StepBars
from flowdl._monitor.tensorboard import EpochSink, ToTensorBoard
from flowdl._monitor.terminal import TerminalWriter, epoch_line, plain, summary_line
from flowdl._web.assets import palette

if TYPE_CHECKING:
    from flowdl._monitor.server import DashboardServer


class Monitor(ToTensorBoard, StepBars):
    """Follows a training run: one line per epoch, a live dashboard, CSV and HTML exports.

    Create it just before the training loop (its clock starts then) and call
    `log` at the end of every epoch. Each line shows the epoch, the metrics, the
    epoch's duration and the estimated time left in the whole run: the ETA leaves
    out the first epoch once later ones are known (warm-up) and takes a trimmed mean
    of the last ten (see `flowdl._eta`). On a terminal the line is styled
    with rich; in a pipe, a file or a notebook log it is plain text. Used as a
    context manager, the monitor calls `finish` when the block ends.

    Args:
        total_epochs: the number of epochs planned (at least 1).
        title: the dashboard's title.
        output: the stream for the lines; by default the current ``sys.stdout``.
        color: ``True`` to style lines, ``False`` for plain text, ``None`` (default)
            to style only on a terminal.
        resources: sample CPU, RAM and (on CUDA) GPU memory at every `log`.
        progress: the step bar of `steps`: ``None`` (default) draws it on a
            terminal only, ``False`` never, ``True`` whenever lines are styled.
        clock: the function giving the time in seconds (``time.monotonic``); a test
            or a replay can pass its own.

    Raises:
        TypeError: `total_epochs` is not an integer.
        ValueError: `total_epochs` is below 1.

    Example:
        >>> import flowdl as fl
        >>> monitor = fl.Monitor(3, resources=False)
        >>> for epoch in range(1, 4):
        ...     loss = 1.0 / epoch                      # ... train one epoch ...
        ...     monitor.log(epoch, {"loss": loss})
        epoch 1/3  loss=1.0000  [..., ETA ...]
        epoch 2/3  loss=0.5000  [..., ETA ...]
        epoch 3/3  loss=0.3333  [..., done]
        >>> monitor.finish()
        done: 3/3 epochs in ...  loss=0.3333
    """

    def __init__(
        self,
        total_epochs: int,
        *,
        title: str = "flowdl training",
        output: TextIO | None = None,
        color: bool | None = None,
        resources: bool = True,
        clock: Callable[[], float] = time.monotonic,
        progress: bool | None = None,
    ) -> None:
        if isinstance(total_epochs, bool) or not isinstance(total_epochs, int):
            raise TypeError(
                render_message(
                    "fl.Monitor needs the number of epochs planned",
                    [
                        ("at", f"fl.Monitor({total_epochs!r})"),
                        ("expected", "an int of at least 1"),
                        ("received", type(total_epochs).__name__),
                    ],
                )
            )
        if total_epochs < 1:
            raise ValueError(
                render_message(
                    "fl.Monitor needs at least one epoch",
                    [
                        ("at", f"fl.Monitor({total_epochs})"),
                        ("expected", "total_epochs >= 1"),
                        ("received", str(total_epochs)),
                    ],
                )
            )
        self.total_epochs = total_epochs
        self.title = str(title)
        self._clock = clock
        self._writer = TerminalWriter(output, color)
        self._sampler = ResourceSampler() if resources else None
        self._eta = EtaEstimator()
        self._records: list[EpochRecord] = []
        self._numbering = EpochNumbering(total_epochs)
        self._hub = EventHub()
        self._server: DashboardServer | None = None
        self._graph_version = 0
        self._finished = False
        self._lock = threading.Lock()
        self._sinks: OrderedDict[int, EpochSink] = OrderedDict()  # to_tensorboard
        self._watched: object | None = None
        self._progress_option = progress  # the step bar (Monitor.steps)
        self._step_counts: list[int] = []
        self._started = clock()
        self._last_time = self._started
        # in Jupyter: a live chart and line in the cell, no server needed
        self._notebook = NotebookDisplay(self.title, total_epochs) if in_notebook() else None
        # the live view shows each line: printed too, they would pile up under it
        # (unless the lines go to a stream of the user's own)
        self._lines_in_notebook = self._notebook is not None and output is None
        self._hub.set_meta(
            {
                "title": self.title,
                "total_epochs": total_epochs,
                "started": _now_text(),
                "palette": palette(10),
            }
        )

    # -- the training loop ---------------------------------------------------------------

    def log(self, epoch: int, *sources: object) -> None:
        """Record epoch `epoch` and print its line.

        Args:
            epoch: the epoch just finished, larger than the previously logged one
                (gaps are fine: the ETA spreads the time since the previous log over
                the epochs in between). Epochs count from 0 (``range(epochs)``) or
                from 1, as the first epoch logged says; either way they are shown
                and stored 1-based (see `flowdl._monitor.numbering`).
            *sources: where the metrics come from, merged in order: dicts
                ``{name: number or one-element tensor}`` and objects with a
                ``latest_metrics()`` method (an `fl.Graph`).

        Raises:
            TypeError: `epoch` is not an int, or a source, name or value has the
                wrong type.
            ValueError: `epoch` is out of range or not after the previous one, a
                metric name is given twice, or the monitor has finished.
        """
        call = f"Monitor.log(epoch={epoch!r}, ...)"
        now = self._clock()
        self._check_epoch(epoch, call)
        metrics = collect_metrics(sources, call)
        epoch = self._numbering.shown(epoch, call)  # 1-based from here on
        resources = self._sampler.sample() if self._sampler is not None else {}
        duration = now - self._last_time
        previous = self._records[-1].epoch if self._records else epoch - 1
        self._eta.add(duration / (epoch - previous))
        record = EpochRecord(
            epoch=epoch,
            duration=duration,
            elapsed=now - self._started,
            eta=self._eta.remaining(self.total_epochs - epoch),
            metrics=metrics,
            resources=resources,
        )
        with self._lock:
            self._records.append(record)
            self._last_time = now
        self._hub.add_epoch(record.event(self.total_epochs))
        line = epoch_line(record, self.total_epochs)
        self._writer.write(line, shown_elsewhere=self._lines_in_notebook)
        if self._notebook is not None:
            self._notebook.show(self._records, plain(line))
        for sink in list(self._sinks.values()):
            sink.write_epoch(record, sources)

    def watch(self, graph: object, *, profile: bool = False) -> None:
        """Show `graph`'s drawing on the dashboard (call again to update it).

        The drawing is ``graph.svg()`` (``graph.svg(profile=True)``, the heat map of
        the last profile, with `profile`), inlined in the page's graph panel: it zooms
        and pans, and hovering a node shows its module, parameters, tags and, when
        profiled, its output shape and time. When the graph cannot draw itself
        (Graphviz is not installed, or the object has no ``svg()`` method) the panel
        shows why.

        Args:
            graph: the model, usually an `fl.Graph`.
            profile: draw the profile's heat map (after a profiled forward).
        """
        label = getattr(graph, "label", None)
        data: dict[str, Any] = {
            "label": label if isinstance(label, str) else type(graph).__name__,
            "svg": None,
            "message": None,
        }
        draw = getattr(graph, "svg", None)
        if not callable(draw):
            data["message"] = f"{type(graph).__name__} has no svg() method to draw itself"
        else:
            try:
                svg = draw(profile=True) if profile else draw()
            except Exception as error:  # shown in the panel: a drawing never stops training
                data["message"] = f"the graph could not be drawn: {error}"
            else:
                if isinstance(svg, bytes):
                    svg = svg.decode("utf-8")
                if isinstance(svg, str) and "<svg" in svg:
                    data["svg"] = svg[svg.index("<svg") :]  # the page sanitises it
                else:
                    data["message"] = f"svg() returned {type(svg).__name__}, not SVG text"
        self._watched = graph
        self._graph_version += 1
        data["version"] = str(self._graph_version)
        self._hub.set_graph(data)

    def finish(self) -> None:
        """Print the summary line and stop the dashboard server. Calling it again does nothing."""
        if self._finished:
            return
        self._finished = True
        elapsed = self._clock() - self._started
        final = self._records[-1].metrics if self._records else {}
        segments = summary_line(len(self._records), self.total_epochs, elapsed, final)
        self._hub.set_finish(
            {
                "epochs": len(self._records),
                "text": {"summary": plain(segments), "elapsed": format_duration(elapsed)},
            }
        )
        self._writer.write(segments, shown_elsewhere=self._lines_in_notebook)
        if self._notebook is not None:
            self._notebook.show(self._records, plain(segments))
        if self._server is not None:
            self._server.close()
        for sink in list(self._sinks.values()):
            sink.close()

    def __enter__(self) -> Monitor:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.finish()

    # -- the dashboard -------------------------------------------------------------------

    def serve(self, port: int = 0, host: str = "127.0.0.1") -> str:
        """Start the live dashboard and return its URL.

        The standard library's threaded HTTP server runs in daemon threads: ``GET /``
        is the page, ``GET /events`` a Server-Sent-Events stream that replays the
        run so far and then follows it live. A browser that is slow or goes away is
        dropped; it never slows `log` down. `finish` stops the server.

        It binds to loopback (127.0.0.1) unless `host` says otherwise, and then only
        answers to loopback host names. There is no authentication: bind another
        address (``"0.0.0.0"``) only on a network you trust; an SSH tunnel
        (``ssh -L 8080:127.0.0.1:PORT host``) is the safe way to watch from afar.

        Args:
            port: the port; 0 (default) picks a free one.
            host: the address to bind.

        Returns:
            The dashboard's URL, e.g. ``"http://127.0.0.1:40123/"``.

        Raises:
            ValueError: the port is out of range, the dashboard is already
                served, or the monitor has finished.
            OSError: the address cannot be bound.
        """
        call = f"Monitor.serve(port={port!r}, host={host!r})"
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ValueError(
                render_message(
                    "the dashboard's port is out of range",
                    [
                        ("at", call),
                        ("expected", "an int from 0 to 65535 (0 picks a free port)"),
                        ("received", repr(port)),
                    ],
                )
            )
        if self._finished:
            raise ValueError(render_message("the monitor has finished", [("at", call)]))
        if self._server is not None:
            raise ValueError(
                render_message(
                    "the dashboard is already served",
                    [("at", call), ("received", f"it is at {self._server.url}")],
                )
            )
        # The HTTP server (http.server, socketserver) is loaded when a dashboard is
        # first served, not by `import flowdl`.
        from flowdl._monitor.server import DashboardServer

        page = dashboard_page(title=self.title, total_epochs=self.total_epochs)
        try:
            self._server = DashboardServer(self._hub, page, host, port)
        except OSError as error:
            raise OSError(
                error.errno,
                render_message(
                    f"the dashboard cannot listen on {host}:{port}: {error.strerror or error}",
                    [("at", call), ("fix", "choose another port, or port=0 for a free one")],
                ),
            ) from error
        url = self._server.url
        warning = "" if is_loopback(host) else " (reachable from other machines, no password)"
        self._writer.write([("dashboard: ", "bold"), (url, "underline"), (warning, "yellow")])
        return url

    @property
    def url(self) -> str | None:
        """The live dashboard's URL, or ``None`` when it is not served."""
        return None if self._server is None or self._finished else self._server.url

    # -- exports -------------------------------------------------------------------------

    def save_html(self, path: str | os.PathLike[str]) -> Path:
        """Write the dashboard as one offline HTML file with every epoch so far in it.

        The page carries its chart code and the data itself (tens of KB, not MB): it
        needs no server and no network. Call it after `finish` for the whole run (or
        at any time for a snapshot).

        Args:
            path: the HTML file; its folder must exist. Written atomically.

        Returns:
            The path written.
        """
        events = self._hub.events()
        for event in events:
            if event["type"] == "meta":
                event["data"] = {**event["data"], "saved": _now_text()}
        page = dashboard_page(title=self.title, total_epochs=self.total_epochs, events=events)
        return write_text_atomic(path, page)

    def export_csv(self, path: str | os.PathLike[str]) -> Path:
        """Write every logged epoch as CSV (see `flowdl._monitor.export.csv_text`).

        The header is ``epoch,duration_s,elapsed_s,eta_s``, the metrics in the order
        they first appeared, then the resource figures; a figure missing from an
        epoch is an empty cell. The ``epoch`` column is 1-based whichever way the
        run counts (a run logging epochs 0, 1, 2 writes 1, 2, 3), as the lines show.

        Args:
            path: the CSV file; its folder must exist. Written atomically.

        Returns:
            The path written.
        """
        with self._lock:
            records = list(self._records)
        return write_text_atomic(path, csv_text(records))

    # -- what it knows -------------------------------------------------------------------

    @property
    def history(self) -> list[dict[str, float]]:
        """One dict per logged epoch, laid out as the CSV's rows (missing figures absent)."""
        with self._lock:
            return [record.row() for record in self._records]

    @property
    def elapsed(self) -> float:
        """Seconds since the monitor started."""
        return self._clock() - self._started

    @property
    def eta(self) -> float | None:
        """Estimated seconds left in the run after the last logged epoch (``None`` before)."""
        return self._records[-1].eta if self._records else None

    @property
    def finished(self) -> bool:
        """Whether `finish` has been called."""
        return self._finished

    def _checkpoint_state(self) -> dict[str, Any]:
        """The history `fl.save_checkpoint(..., monitor=self)` stores (`flowdl._monitor.resume`)."""
        return monitor_state(self)

    def _restore_checkpoint_state(self, state: object) -> Callable[[], None]:
        """Check a stored history; return what restores it (for `fl.load_checkpoint`)."""
        return prepare_restore(self, state)

    def _check_epoch(self, epoch: object, call: str) -> None:
        if self._finished:
            raise ValueError(
                render_message(
                    "the monitor has finished; it logs no more epochs",
                    [("at", call), ("fix", "create a new fl.Monitor for a new run")],
                )
            )


def _now_text() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
