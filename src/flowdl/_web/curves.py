"""The training-curves page: named series per epoch as line charts in one offline HTML file."""

from __future__ import annotations

import math
import numbers
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flowdl._errors import render_message
from flowdl._files import write_text_atomic
from flowdl._format import format_metric
from flowdl._web.assets import html_text, palette, script_json
from flowdl._web.page_parts import (
    OFFLINE_POLICY,
    charts_script,
    head,
    plot_values,
    template,
)

Series = Mapping[str, Sequence[float | None]]
Marks = Sequence[tuple[int, str]]


def curves_page(
    series: Series,
    title: str,
    *,
    x_title: str = "Epoch",
    y_title: str = "",
    subtitle: str | None = None,
    marks: Marks = (),
) -> str:
    """One self-contained HTML page drawing each series as a line over epochs 1, 2, ...

    Each series gets its own chart and value axis (a gradient norm of 50 does not
    flatten a loss of 0.01), drawn by flowdl's own SVG renderer inlined into the page;
    it loads nothing from the network (its security policy forbids it). Losses (names
    containing ``loss``) start on a log scale, every chart has a log-scale toggle;
    dragging across a chart, the wheel or the range buttons zoom every chart at once,
    and hovering shows the epoch and the value (written by
    `flowdl._format.format_metric`). `marks` draw a dashed line at their epoch on every
    chart, with their text. Below the charts a table gives each series' last, lowest
    and highest value. Series may differ in length; ``None`` or NaN is a gap.

    Args:
        series: ``{name: [value of epoch 1, value of epoch 2, ...]}``, in drawing order.
        title: the page's title and heading.
        x_title: the horizontal axis' title.
        y_title: the vertical axis' title.
        subtitle: a line under the heading; by default how many series and epochs.
        marks: ``(epoch, text)`` pairs, e.g. ``[(12, "val_loss stalled: lr / 2")]``.

    Returns:
        The page, as text.

    Raises:
        TypeError: `series` is not a mapping of names to sequences of numbers.
        ValueError: `series` is empty.

    Example:
        >>> page = curves_page({"loss": [1.0, 0.5, 0.25], "accuracy": [0.5, 0.75, 0.9]},
        ...                    "Training Curves")
        >>> page.startswith("<!doctype html>"), "<title>Training Curves</title>" in page
        (True, True)
    """
    checked = _check_series(series)
    checked_marks = _check_marks(marks)
    longest = max(len(values) for values in checked.values())
    if subtitle is None:
        subtitle = f"{len(checked)} series, {longest} epoch{'s' if longest != 1 else ''}"
    drawn = []
    for name, values in checked.items():
        points, text = plot_values(values)
        drawn.append({"name": name, "values": points, "text": text})
    data: dict[str, Any] = {
        "series": drawn,
        "x_title": x_title,
        "y_title": y_title,
        "palette": palette(len(drawn)),
        "marks": checked_marks,
    }
    return template("curves.html").substitute(
        head=head(title, OFFLINE_POLICY),
        title=html_text(title),
        subtitle=html_text(subtitle),
        charts=charts_script(),
        table=_summary_table(checked),
        data=script_json(data),
    )


def write_curves_page(
    path: str | os.PathLike[str],
    series: Series,
    title: str,
    *,
    x_title: str = "Epoch",
    y_title: str = "",
    subtitle: str | None = None,
    marks: Marks = (),
) -> Path:
    """Write `curves_page` to `path`, atomically (a temporary file, then a rename).

    Args:
        path: the HTML file to write; its folder must exist.
        series: ``{name: [value per epoch]}``.
        title: the page's title and heading.
        x_title: the horizontal axis' title.
        y_title: the vertical axis' title.
        subtitle: a line under the heading.
        marks: ``(epoch, text)`` pairs drawn as dashed lines on every chart.

    Returns:
        The path written.

    Raises:
        TypeError: `series` is not a mapping of names to sequences of numbers.
        ValueError: `series` is empty.
        FileNotFoundError: the folder of `path` does not exist.

    Example:
        >>> import tempfile, pathlib
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "curves.html"
        >>> write_curves_page(out, {"loss": [0.9, 0.4]}, "Training Curves").name
        'curves.html'
    """
    page = curves_page(
        series, title, x_title=x_title, y_title=y_title, subtitle=subtitle, marks=marks
    )
    return write_text_atomic(path, page)


def _check_series(series: object) -> dict[str, list[float | None]]:
    if not isinstance(series, Mapping):
        raise TypeError(
            render_message(
                "the curves page needs named series",
                [
                    ("expected", "a mapping {name: [value per epoch]}"),
                    ("received", type(series).__name__),
                    ("fix", 'pass e.g. {"loss": [0.9, 0.5, 0.3]}'),
                ],
            )
        )
    if not series:
        raise ValueError(
            render_message(
                "the curves page has no series to draw",
                [
                    ("expected", "at least one {name: [value per epoch]}"),
                    ("received", "an empty mapping"),
                    ("fix", "record and flush some values first, or name the tags to plot"),
                ],
            )
        )
    checked: dict[str, list[float | None]] = {}
    for name, values in series.items():
        if not isinstance(name, str):
            raise TypeError(f"series names are strings; received {name!r} ({type(name).__name__})")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence):
            raise TypeError(
                f"series {name!r} must be a sequence of numbers (one per epoch); "
                f"received {type(values).__name__}"
            )
        checked[name] = [_number(name, index, value) for index, value in enumerate(values)]
    return checked


def _check_marks(marks: object) -> list[dict[str, Any]]:
    if isinstance(marks, (str, bytes)) or not isinstance(marks, Sequence):
        raise TypeError(
            render_message(
                "marks are (epoch, text) pairs",
                [
                    ("expected", "a sequence like [(12, 'val_loss stalled: lr / 2')]"),
                    ("received", type(marks).__name__),
                ],
            )
        )
    checked = []
    for mark in marks:
        epoch, text = mark if isinstance(mark, tuple) and len(mark) == 2 else (None, None)
        if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
            raise TypeError(
                f"a mark is an (epoch, text) pair with an int epoch >= 1; received {mark!r}"
            )
        checked.append({"epoch": epoch, "text": str(text)})
    return checked


def _number(name: str, index: int, value: object) -> float | None:
    if value is None:
        return None
    if not isinstance(value, bool) and isinstance(value, numbers.Real):
        return float(value)
    raise TypeError(
        f"series {name!r}, epoch {index + 1}: expected a number or None; "
        f"received {value!r} ({type(value).__name__})"
    )


def _summary_table(series: dict[str, list[float | None]]) -> str:
    rows = ["<table><thead><tr><th>series</th><th>epochs</th><th>last</th>"]
    rows.append("<th>lowest</th><th>highest</th></tr></thead><tbody>")
    for name, values in series.items():
        finite = [value for value in values if value is not None and math.isfinite(value)]
        present = [value for value in values if value is not None]
        cells = [
            format_metric(present[-1]) if present else "",
            format_metric(min(finite)) if finite else "",
            format_metric(max(finite)) if finite else "",
        ]
        rows.append(
            f"<tr><td>{html_text(name)}</td><td>{len(values)}</td>"
            + "".join(f"<td>{cell}</td>" for cell in cells)
            + "</tr>"
        )
    rows.append("</tbody></table>")
    return "".join(rows)
