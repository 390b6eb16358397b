"""The monitor in a Jupyter notebook: one output that updates in place, no server.

Under an IPython kernel, `fl.Monitor` shows a cell output of its own (IPython's
``display(..., display_id=True)``) and replaces it at every `Monitor.log` and at
`Monitor.finish`: the title, a progress bar, the epoch's line, and one small chart per
metric (static SVG drawn in Python, so it needs no script and no trusted notebook).
``FLOWDL_NOTEBOOK=0`` in the environment turns it off.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from flowdl._monitor.record import EpochRecord
from flowdl._web.assets import html_text
from flowdl._web.svg_chart import small_multiples_svg


def in_notebook() -> bool:
    """Whether this process runs under an IPython kernel (Jupyter), not a terminal.

    Example:
        >>> in_notebook()  # doctests run in a plain interpreter
        False
    """
    if os.environ.get("FLOWDL_NOTEBOOK", "") == "0":
        return False
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False  # a kernel has imported IPython long before any flowdl code runs
    try:
        shell = ipython.get_ipython()
    except Exception:  # an IPython too broken to ask: behave as in a terminal
        return False
    return shell is not None and getattr(shell, "kernel", None) is not None


class MonitorView:
    """What the notebook shows: an object with an HTML and a plain-text form.

    Example:
        >>> view = MonitorView("run", 3, [EpochRecord(1, 1.0, 1.0, 2.0, {"loss": 0.5})],
        ...                    "epoch 1/3  loss=0.5000")
        >>> html = view._repr_html_()
        >>> "epoch 1/3  loss=0.5000" in html, "<svg" in html, repr(view)
        (True, True, 'epoch 1/3  loss=0.5000')
    """

    def __init__(
        self, title: str, total_epochs: int, records: Sequence[EpochRecord], line: str
    ) -> None:
        self.title = title
        self.total_epochs = total_epochs
        self.records = list(records)
        self.line = line

    def _repr_html_(self) -> str:
        series: dict[str, list[tuple[int, float | None]]] = {}
        for record in self.records:
            for name, value in record.metrics.items():
                series.setdefault(name, []).append((record.epoch, value))
        done = self.records[-1].epoch if self.records else 0
        percent = min(100.0, 100.0 * done / self.total_epochs)
        chart = small_multiples_svg(series, self.total_epochs) if series else ""
        return (
            '<div class="flowdl-monitor" style="font-family: system-ui, sans-serif">'
            f"<b>{html_text(self.title)}</b>"
            '<div style="height:8px;background:#e5e7eb;border-radius:4px;max-width:780px;'
            f'margin:4px 0"><div style="height:8px;width:{percent:.1f}%;background:#2563eb;'
            'border-radius:4px"></div></div>'
            f'<pre style="margin:2px 0">{html_text(self.line)}</pre>{chart}</div>'
        )

    def __repr__(self) -> str:
        return self.line


class NotebookDisplay:
    """One notebook output, created now and replaced by `show`."""

    def __init__(self, title: str, total_epochs: int) -> None:
        # IPython is there (a kernel runs us) but untyped: reached through importlib
        display: Any = importlib.import_module("IPython.display").display
        self._title = title
        self._total = total_epochs
        first = MonitorView(title, total_epochs, [], f"waiting for epoch 1 of {total_epochs}")
        self._handle: Any = display(first, display_id=True)

    def show(self, records: Sequence[EpochRecord], line: str) -> None:
        """Replace the output with the run so far and `line` (the latest epoch's)."""
        if self._handle is not None:
            self._handle.update(MonitorView(self._title, self._total, records, line))
