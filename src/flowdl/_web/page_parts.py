"""Pieces every flowdl page has: the security policy, the style, the scripts."""

from __future__ import annotations

import math
from collections.abc import Sequence
from string import Template

from flowdl._format import format_metric
from flowdl._web.assets import html_text, safe_inline_script, static_text

# An offline page loads nothing: scripts and styles are inline, images are data URLs.
OFFLINE_POLICY = (
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; font-src data:"
)
# The live dashboard also loads its event stream from its own server.
LIVE_POLICY = (
    "default-src 'none'; script-src 'self' 'unsafe-inline'; style-src 'unsafe-inline'; "
    "img-src data:; font-src data:; connect-src 'self'"
)


_HEAD = Template(
    """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="Content-Security-Policy" content="$csp">
<title>$title</title>
<style>$style</style>"""
)


def head(title: str, policy: str) -> str:
    """The start of every page, up to the style sheet: `title` is escaped here.

    Example:
        >>> "<title>a &lt;b&gt;</title>" in head("a <b>", OFFLINE_POLICY)
        True
    """
    return _HEAD.substitute(csp=policy, title=html_text(title), style=style())


def template(name: str) -> Template:
    """The page template ``static/<name>`` as a `string.Template`."""
    return Template(static_text(name))


def style() -> str:
    """The style sheet shared by every page."""
    return static_text("style.css")


def charts_script() -> str:
    """Our chart code (``window.flowdlCharts``), shared by every page."""
    return safe_inline_script(static_text("charts.js"))


def plot_values(values: Sequence[float | None]) -> tuple[list[float | None], list[str]]:
    """Values for a chart and their hover text: a missing or non-finite value is a gap.

    Example:
        >>> plot_values([0.5, None, float("nan"), 1e-5])
        ([0.5, None, None, 1e-05], ['0.5000', '', 'nan', '1.00e-05'])
    """
    points: list[float | None] = []
    text: list[str] = []
    for value in values:
        if value is None:
            points.append(None)
            text.append("")
        else:
            points.append(value if math.isfinite(value) else None)
            text.append(format_metric(value))
    return points, text
