"""How `Monitor.log` numbers epochs: from 0 or from 1, shown 1-based everywhere.

``for epoch in range(epochs)`` counts from 0, ``range(1, epochs + 1)`` from 1, and
Keras and Lightning count from 0 internally. The first epoch logged decides: 0 means
the run counts from 0, anything else from 1. Either way the monitor shows and stores
the epoch 1-based (the line, the dashboard's data, the CSV and `Monitor.history`), so
``log(0, ...)`` in a run of 10 prints ``epoch  1/10`` and ``log(9, ...)`` prints
``epoch 10/10``.
"""

from __future__ import annotations

from flowdl._errors import render_message

__all__ = ["EpochNumbering"]


class EpochNumbering:
    """Checks each logged epoch and turns it into the 1-based number shown.

    Args:
        total_epochs: the epochs planned.

    Example:
        >>> numbering = EpochNumbering(3)
        >>> [numbering.shown(epoch, "log") for epoch in (0, 1, 2)]
        [1, 2, 3]
        >>> numbering.first
        0
        >>> EpochNumbering(3).shown(2, "log")   # counting from 1 (epoch 1 skipped)
        2
    """

    def __init__(self, total_epochs: int) -> None:
        self.total_epochs = total_epochs
        self.first: int | None = None
        """The number of the first epoch: 0 or 1, ``None`` before the first log."""
        self._last: int | None = None

    def resume(self, first: int, last_shown: int | None) -> None:
        """Go on from a restored history: counting from `first`, the last epoch shown
        (1-based) was `last_shown` (``None``: nothing logged yet)."""
        self.first = first if last_shown is not None else None
        self._last = None if last_shown is None else last_shown + first - 1

    def shown(self, epoch: object, call: str) -> int:
        """The 1-based number of `epoch`, after checking it comes after the last one.

        Raises:
            TypeError: `epoch` is not an int.
            ValueError: `epoch` is negative, beyond the run, or not after the last one.
        """
        if isinstance(epoch, bool) or not isinstance(epoch, int):
            raise TypeError(
                render_message(
                    "the epoch must be an int",
                    [
                        ("at", call),
                        ("expected", "0, 1, 2, ... or 1, 2, 3, ..."),
                        ("received", type(epoch).__name__),
                    ],
                )
            )
        first = self.first if self.first is not None else (0 if epoch == 0 else 1)
        last = self._last
        lowest = first if last is None else last + 1
        highest = self.total_epochs - 1 + first
        if not lowest <= epoch <= highest:
            counted = "from 0" if first == 0 else "from 1"
            raise ValueError(
                render_message(
                    f"epoch {epoch} is out of order",
                    [
                        ("at", call),
                        (
                            "expected",
                            f"an epoch from {lowest} to {highest} (this run counts "
                            f"{counted}, decided by the first epoch logged; the last "
                            f"logged is {'none' if last is None else last}; the monitor "
                            f"was created for {self.total_epochs})",
                        ),
                        ("received", str(epoch)),
                        (
                            "fix",
                            "log each epoch once, numbered from 0 (range(epochs)) "
                            "or from 1 (range(1, epochs + 1))",
                        ),
                    ],
                )
            )
        self.first = first
        self._last = epoch
        return epoch - first + 1
