"""`Monitor.steps`: a progress bar for the steps of the epoch under way.

``for batch in monitor.steps(loader):`` yields the loader's items unchanged and, on a
terminal, draws a bar under the monitor's lines (rich's `Progress`): the epoch, the
steps done out of the epoch's total, steps per second and the time left in the
epoch. It is transient: when the loop ends the bar goes, and the epoch's line from
`Monitor.log` takes its place. A loop broken early or ended by an exception clears
it too.

The bar is drawn only on a terminal: with ``fl.Monitor(progress=None)`` (the
default) it is off when the output is a pipe, a file, a notebook or ``TERM=dumb``;
``progress=False`` turns it off everywhere and ``progress=True`` draws it whenever
the lines are styled. When off, `Monitor.steps` costs one generator step per item.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

from flowdl._errors import render_message
from flowdl._monitor.record import EpochRecord
from flowdl._monitor.terminal import TerminalWriter

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

__all__ = ["StepBars"]

T = TypeVar("T")


class StepBars:
    """`Monitor.steps`, a part of `fl.Monitor`: the bar inside each epoch."""

    total_epochs: int
    _writer: TerminalWriter
    _records: list[EpochRecord]
    _progress_option: bool | None
    _step_counts: list[int]

    def steps(self, iterable: Iterable[T], total: int | None = None) -> Iterator[T]:
        """Yield the items of `iterable` (the batches of one epoch) with a step bar.

        On a terminal, a bar under the monitor's lines shows ``epoch N/T``, the
        steps done out of the epoch's steps, steps per second and the epoch's ETA;
        it goes away when the loop ends (see `flowdl._monitor.step_bar`). Use it once
        per epoch, before `log`: ``for batch in monitor.steps(loader): ...``.

        Args:
            iterable: the epoch's batches (a ``DataLoader``, a list, a range...).
            total: the number of steps when ``len(iterable)`` does not give it;
                without either, the previous epoch's count is used (or the bar
                shows no total in the first epoch).

        Returns:
            an iterator over the same items, in order.

        Raises:
            ValueError: `total` is negative.

        Example:
            >>> import io, flowdl as fl
            >>> monitor = fl.Monitor(1, resources=False, output=io.StringIO())
            >>> [batch for batch in monitor.steps(range(3))]   # no terminal: no bar
            [0, 1, 2]
        """
        if total is not None and (
            isinstance(total, bool) or not isinstance(total, int) or total < 0
        ):
            raise ValueError(
                render_message(
                    "the number of steps must be an int >= 0",
                    [
                        ("at", f"Monitor.steps(..., total={total!r})"),
                        ("expected", "the epoch's number of batches, e.g. len(loader)"),
                        ("received", repr(total)),
                    ],
                )
            )
        if total is None:
            try:
                total = len(iterable)  # type: ignore[arg-type]
            except TypeError:
                total = self._step_counts[-1] if self._step_counts else None
        console = self._bar_console()
        if console is None:
            return self._count(iterable)
        return self._drawn(iterable, total, console)

    def _count(self, iterable: Iterable[T]) -> Iterator[T]:
        count = 0
        try:
            for item in iterable:
                count += 1
                yield item
        finally:
            self._step_counts.append(count)

    def _drawn(self, iterable: Iterable[T], total: int | None, console: Console) -> Iterator[T]:
        progress = _progress(console)
        epoch = self._records[-1].epoch + 1 if self._records else 1
        task = progress.add_task(f"epoch {epoch}/{self.total_epochs}", total=total)
        count = 0
        progress.start()
        try:
            for item in iterable:
                yield item
                count += 1
                progress.advance(task)
        finally:
            progress.stop()
            self._step_counts.append(count)

    def _bar_console(self) -> Console | None:
        """The console to draw on, or ``None`` when no bar is drawn."""
        if self._progress_option is False:
            return None
        console = self._writer.console()
        if console is None:
            return None
        if self._progress_option is None and not (
            console.is_terminal and not console.is_dumb_terminal and not console.is_jupyter
        ):
            return None
        return console


def _progress(console: Console) -> Progress:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        Task,
        TextColumn,
        TimeRemainingColumn,
    )
    from rich.text import Text

    class StepsPerSecond(ProgressColumn):
        def render(self, task: Task) -> Text:
            speed = task.finished_speed or task.speed
            return Text("? steps/s" if speed is None else f"{speed:.1f} steps/s", style="cyan")

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        StepsPerSecond(),
        TextColumn("[dim]epoch ETA"),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        refresh_per_second=10,
    )
