"""`Monitor.to_tensorboard`: every logged epoch as TensorBoard scalars, the graph as text and image.

Needs the optional extra ``pip install "flowdl[tensorboard]"`` (the ``tensorboard``
package; the writer is PyTorch's own `torch.utils.tensorboard.SummaryWriter`). At
each `Monitor.log`, with the epoch 1-based as the step, the writer adds:

- every metric of the epoch under its own name (``loss``, ``val/acc``,
  ``encoder.hidden``): what the graphs flushed and the dicts gave;
- every resource figure under ``resources/<name>`` (``resources/cpu_percent``...);
- the epoch's duration and the ETA under ``time/epoch_s`` and ``time/eta_s``;
- for each source with timing trends (a graph after ``flush_timings``), each timing
  history that grew since the last epoch, under ``timing/<name>`` (seconds).

The watched graph (`Monitor.watch`, or the `graph` given) is written once as its DOT
text (TensorBoard's Text tab, tag ``graph/dot``) and, when Graphviz is installed, as a
PNG drawing (Images tab, tag ``graph/drawing``).
"""

from __future__ import annotations

import os
import struct
import subprocess
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from flowdl._draw.svg import GraphvizError, find_dot
from flowdl._monitor.record import EpochRecord

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

__all__ = ["EXTRA_HINT", "EpochSink", "TensorBoardWriter", "ToTensorBoard"]

EXTRA_HINT = 'pip install "flowdl[tensorboard]" (or pip install tensorboard)'


class EpochSink(Protocol):
    """What a monitor feeds each logged epoch to (a `TensorBoardWriter`)."""

    def write_epoch(self, record: EpochRecord, sources: tuple[object, ...]) -> None:
        """Take one new record and the sources `Monitor.log` was given."""
        ...

    def close(self) -> None:
        """Stop (the monitor finished)."""
        ...


def summary_writer(logdir: str | os.PathLike[str]) -> SummaryWriter:
    """PyTorch's `SummaryWriter` on `logdir`.

    Raises:
        ImportError: the ``tensorboard`` package is missing (the message names the extra).
    """
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as error:
        raise ImportError(
            "Monitor.to_tensorboard() needs the tensorboard package, which is not "
            f"installed; install the extra: {EXTRA_HINT}"
        ) from error
    return SummaryWriter(log_dir=os.fspath(logdir))


class TensorBoardWriter:
    """Writes a monitor's epochs into a TensorBoard log folder (`Monitor.to_tensorboard`).

    ``close()`` (or ``remove()``, or the end of a ``with`` block) stops writing and
    closes the event file; the monitor's `finish` closes it too. Calling it again
    does nothing.

    Attributes:
        logdir: the folder of the event files.
    """

    def __init__(
        self,
        logdir: str | os.PathLike[str],
        sinks: OrderedDict[int, EpochSink],
        graph: Callable[[], object | None],
    ) -> None:
        self._writer: SummaryWriter | None = summary_writer(logdir)
        self.logdir = Path(logdir)
        self._sinks = sinks
        self._graph = graph
        self._drawn: object | None = None
        self._timing_lengths: dict[str, int] = {}
        self._id = id(self)
        sinks[self._id] = self
        self._draw_graph()

    @property
    def closed(self) -> bool:
        """Whether the writer was closed."""
        return self._writer is None

    def write_epoch(self, record: EpochRecord, sources: tuple[object, ...]) -> None:
        """Add the scalars of one logged epoch (step: its 1-based number)."""
        writer = self._writer
        if writer is None:
            return
        step = record.epoch
        for name, value in record.metrics.items():
            writer.add_scalar(name, value, step)
        for name, value in record.resources.items():
            writer.add_scalar(f"resources/{name}", value, step)
        writer.add_scalar("time/epoch_s", record.duration, step)
        if record.eta is not None:
            writer.add_scalar("time/eta_s", record.eta, step)
        for source in sources:
            self._write_timings(writer, source, step)
        self._draw_graph()
        writer.flush()

    def _write_timings(self, writer: SummaryWriter, source: object, step: int) -> None:
        trends = getattr(source, "timing_trends", None)
        if not callable(trends):
            return
        for name, trend in trends().items():
            label = getattr(source, "label", None)
            key = f"{label}.{name}" if isinstance(label, str) and label else name
            if len(trend) > self._timing_lengths.get(key, 0):
                writer.add_scalar(f"timing/{key}", trend.latest, step)
            self._timing_lengths[key] = len(trend)

    def _draw_graph(self) -> None:
        """Write the graph's DOT text, and its PNG when Graphviz is there, once per graph."""
        graph = self._graph()
        writer = self._writer
        if graph is None or graph is self._drawn or writer is None:
            return
        self._drawn = graph
        dot = getattr(graph, "dot", None)
        if not callable(dot):
            return
        text = dot()
        # TensorBoard's text tab reads Markdown: indented lines are shown verbatim.
        writer.add_text("graph/dot", "\n".join("    " + line for line in text.splitlines()), 0)
        png = _render_png(text)
        if png is not None:
            file_writer = writer._get_file_writer()  # type: ignore[no-untyped-call]
            file_writer.add_summary(_image_summary("graph/drawing", png), 0)

    def close(self) -> None:
        """Stop writing and close the event file."""
        writer, self._writer = self._writer, None
        self._sinks.pop(self._id, None)
        if writer is not None:
            writer.close()

    remove = close
    """The same as `close` (the name torch's hook handles use)."""

    def __enter__(self) -> TensorBoardWriter:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<TensorBoardWriter {str(self.logdir)!r} ({state})>"


def _render_png(dot_text: str, timeout: float = 60.0) -> bytes | None:
    """``dot -Tpng`` of `dot_text`, or ``None`` without Graphviz (or when it fails)."""
    try:
        program = find_dot()
        done = subprocess.run(
            [program, "-Tpng"], input=dot_text.encode(), capture_output=True, timeout=timeout
        )
    except (GraphvizError, subprocess.TimeoutExpired, OSError):
        return None
    return done.stdout if done.returncode == 0 and done.stdout[:4] == b"\x89PNG" else None


def _image_summary(tag: str, png: bytes) -> Any:
    """A TensorBoard image summary of encoded PNG bytes (no decoding needed)."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    image = Summary.Image(height=height, width=width, colorspace=4, encoded_image_string=png)
    return Summary(value=[Summary.Value(tag=tag, image=image)])


class ToTensorBoard:
    """`Monitor.to_tensorboard`, a part of `fl.Monitor`: the monitor feeds its sinks."""

    _sinks: OrderedDict[int, EpochSink]
    _watched: object | None

    def to_tensorboard(
        self, logdir: str | os.PathLike[str], graph: object | None = None
    ) -> TensorBoardWriter:
        """Write every epoch logged from now on into a TensorBoard log folder.

        Each epoch's metrics (under their names), resource figures
        (``resources/...``), epoch time and ETA (``time/...``) and the timing trends
        of the graphs logged (``timing/...``) become scalars, with the 1-based epoch
        as the step; the graph (`graph`, else the one `Monitor.watch` was given) is
        written once as DOT text and, with Graphviz, as an image. Needs the extra
        ``pip install "flowdl[tensorboard]"``; see `flowdl._monitor.tensorboard`.

        Args:
            logdir: the folder for the event files (``tensorboard --logdir`` it).
            graph: the model to draw; by default the watched one.

        Returns:
            the writer; its ``close()`` stops writing (`Monitor.finish` closes it too).

        Raises:
            ImportError: the ``tensorboard`` package is not installed.

        Example:
            >>> import io, tempfile, flowdl as fl
            >>> monitor = fl.Monitor(2, resources=False, output=io.StringIO())
            >>> board = monitor.to_tensorboard(tempfile.mkdtemp())
            >>> monitor.log(1, {"loss": 0.5})   # also written as the scalar "loss", step 1
            >>> monitor.finish()                # closes the writer
        """
        return TensorBoardWriter(
            logdir, self._sinks, lambda: graph if graph is not None else self._watched
        )
