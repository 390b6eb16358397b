"""The monitor's terminal output: one line per epoch, styled by rich on a terminal.

A line is a list of segments ``(text, style)``; the plain text is their
concatenation, so the styled and the plain line read exactly the same.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, TextIO

from flowdl._format import format_duration, format_metric
from flowdl._log import logger
from flowdl._monitor.record import EpochRecord
from flowdl._monitor.resources import format_bytes

if TYPE_CHECKING:
    from rich.console import Console

Segment = tuple[str, str]

_EPOCH = "bold"
_NAME = "cyan"
_VALUE = "bold"
_TIME = "yellow"
_ETA = "green"
_QUIET = "dim"

_LOG = logger("monitor")


def epoch_line(record: EpochRecord, total_epochs: int) -> list[Segment]:
    """The segments of one epoch's line.

    ``epoch N/T`` (N right-aligned to T's digits), each metric as ``name=value``, then
    ``[epoch time, ETA rest-of-run]`` (``done`` on the last epoch) and, on CUDA, the
    allocated / reserved GPU memory.

    Example:
        >>> record = EpochRecord(3, 1.25, 4.0, 8.75, {"loss": 0.1234567, "acc": 0.5})
        >>> plain(epoch_line(record, 10))
        'epoch  3/10  loss=0.1235  acc=0.5000  [1.2s, ETA 8.8s]'
    """
    width = len(str(total_epochs))
    segments: list[Segment] = [(f"epoch {record.epoch:>{width}}/{total_epochs}", _EPOCH)]
    segments += metric_segments(record.metrics)
    if record.epoch >= total_epochs:
        eta = "done"
    elif record.eta is None:
        eta = "ETA ?"
    else:
        eta = f"ETA {format_duration(record.eta)}"
    segments += [
        ("  [", _QUIET),
        (format_duration(record.duration), _TIME),
        (", ", _QUIET),
        (eta, _ETA),
        ("]", _QUIET),
    ]
    allocated = record.resources.get("gpu_allocated_bytes")
    reserved = record.resources.get("gpu_reserved_bytes")
    if allocated is not None and reserved is not None:
        segments += [("  gpu ", _QUIET), (f"{format_bytes(allocated)}", _VALUE)]
        segments += [(" / ", _QUIET), (f"{format_bytes(reserved)} reserved", _QUIET)]
    return segments


def summary_line(
    epochs_logged: int, total_epochs: int, elapsed: float, metrics: dict[str, float]
) -> list[Segment]:
    """The segments of the line `Monitor.finish` prints.

    Example:
        >>> plain(summary_line(4, 10, 61.0, {"loss": 0.05}))
        'done: 4/10 epochs in 1m01s  loss=0.0500'
    """
    segments: list[Segment] = [
        ("done: ", _EPOCH),
        (f"{epochs_logged}/{total_epochs} epochs", _EPOCH),
        (" in ", _QUIET),
        (format_duration(elapsed), _TIME),
    ]
    return segments + metric_segments(metrics)


def metric_segments(metrics: dict[str, float]) -> list[Segment]:
    """``  name=value`` for each metric."""
    segments: list[Segment] = []
    for name, value in metrics.items():
        segments += [("  ", ""), (name, _NAME), ("=", _QUIET), (format_metric(value), _VALUE)]
    return segments


def plain(segments: list[Segment]) -> str:
    """The text of a line, without styles."""
    return "".join(text for text, _ in segments)


class TerminalWriter:
    """Writes lines to a stream: styled by rich on a terminal, plain text otherwise.

    With ``color=None`` rich decides whether the stream is a terminal (``isatty``,
    ``TERM=dumb``, ``FORCE_COLOR``, ``NO_COLOR``, Jupyter); a pipe or a file gets
    plain lines without escape codes. ``color=True`` or ``False`` forces the choice.
    The stream defaults to the current ``sys.stdout`` at each write. Every line
    is also logged, as plain text at INFO, on the ``flowdl.monitor`` logger.

    Args:
        output: the stream to write to, or ``None`` for ``sys.stdout``.
        color: ``True`` to style, ``False`` for plain text, ``None`` to decide.

    Example:
        >>> import io
        >>> stream = io.StringIO()
        >>> TerminalWriter(stream, color=None).write([("epoch 1/2", "bold")])
        >>> stream.getvalue()
        'epoch 1/2\\n'
    """

    def __init__(self, output: TextIO | None, color: bool | None) -> None:
        self._output = output
        self._color = color
        self._console: tuple[TextIO, Console | None] | None = None

    def write(self, segments: list[Segment], *, shown_elsewhere: bool = False) -> None:
        """Write one line, and log its plain text at INFO on ``flowdl.monitor``.

        With `shown_elsewhere` (a notebook's live view shows it) the line is only
        logged."""
        _LOG.info("%s", plain(segments))
        if shown_elsewhere:
            return
        stream = self._output if self._output is not None else sys.stdout
        console = self._console_for(stream)
        if console is None:
            stream.write(plain(segments) + "\n")
            stream.flush()
            return
        from rich.text import Text  # rich is loaded by the first styled line

        console.print(Text.assemble(*segments), soft_wrap=True, highlight=False)

    def console(self) -> Console | None:
        """The rich console of the current stream, or ``None`` when lines are plain."""
        stream = self._output if self._output is not None else sys.stdout
        return self._console_for(stream)

    def styled(self) -> bool:
        """Whether lines are styled by rich on the current stream."""
        stream = self._output if self._output is not None else sys.stdout
        return self._console_for(stream) is not None

    def _console_for(self, stream: TextIO) -> Console | None:
        if self._color is False:
            return None
        if self._console is None or self._console[0] is not stream:
            from rich.console import Console  # loaded by the first line, not by `import flowdl`

            console = Console(file=stream, force_terminal=True if self._color else None)
            styled = self._color or (
                (console.is_terminal and not console.is_dumb_terminal) or console.is_jupyter
            )
            self._console = (stream, console if styled else None)
        return self._console[1]
