"""What the pages are made of: plotly.js, our own script and style, data safe to embed."""

from __future__ import annotations

import functools
import html
import json
from importlib import resources
from typing import Any

# What replaces characters that could end a <script> element or a JS string early.
_SCRIPT_ESCAPES = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


@functools.cache
def plotly_js() -> str:
    """The minified plotly.js bundled with the installed ``plotly`` package (about 4.8 MB).

    Example:
        >>> "Plotly" in plotly_js()[:2000]
        True
    """
    from plotly.offline import get_plotlyjs

    return safe_inline_script(get_plotlyjs())


@functools.cache
def static_text(name: str) -> str:
    """A file of ``flowdl/_web/static`` (our own script, style and page templates).

    Example:
        >>> "flowdlCharts" in static_text("charts.js")
        True
    """
    return (resources.files("flowdl._web") / "static" / name).read_text(encoding="utf-8")


def safe_inline_script(source: str) -> str:
    """`source` made safe to place between ``<script>`` and ``</script>``.

    Example:
        >>> safe_inline_script('let s = "</script>";')
        'let s = "<\\\\/script>";'
    """
    return source.replace("</script", "<\\/script").replace("</SCRIPT", "<\\/SCRIPT")


def script_json(value: Any) -> str:
    """`value` as JSON that can sit inside a ``<script>`` element unchanged.

    ``<``, ``>`` and ``&`` become ``\\u`` escapes, so no string in the data can close
    the element or open a comment; NaN and infinities are refused (JSON has none).

    Example:
        >>> script_json({"name": "</script><b>"})
        '{"name":"\\\\u003c/script\\\\u003e\\\\u003cb\\\\u003e"}'
    """
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    for character, escape in _SCRIPT_ESCAPES.items():
        text = text.replace(character, escape)
    return text


def html_text(text: str) -> str:
    """`text` escaped for HTML element content and attribute values.

    Example:
        >>> html_text('<b title="x">')
        '&lt;b title=&quot;x&quot;&gt;'
    """
    return html.escape(text, quote=True)


def palette(count: int) -> list[str]:
    """Line colours for `count` series: plotly's default ten, or 24 distinct ones beyond.

    Example:
        >>> len(palette(3)), len(palette(30))
        (10, 24)
    """
    from plotly.colors import qualitative

    return list(qualitative.Plotly if count <= len(qualitative.Plotly) else qualitative.Dark24)
