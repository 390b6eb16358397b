"""What the pages are made of: our own chart script and style, data safe to embed."""

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


# flowdl's own line colours: ten for the usual case, then fourteen more, all distinct.
COLORS = (
    "#2563eb",
    "#dc2626",
    "#16a34a",
    "#d97706",
    "#7c3aed",
    "#0891b2",
    "#db2777",
    "#65a30d",
    "#475569",
    "#b45309",
)
MORE_COLORS = (
    "#1e3a8a", "#991b1b", "#166534", "#92400e", "#5b21b6", "#155e75", "#9d174d",
    "#3f6212", "#0f766e", "#c2410c", "#6d28d9", "#be123c", "#0369a1", "#4d7c0f",
)  # fmt: skip


def palette(count: int) -> list[str]:
    """Line colours for `count` series: flowdl's ten, or 24 distinct ones beyond ten.

    Example:
        >>> len(palette(3)), len(palette(30)), palette(1)[0]
        (10, 24, '#2563eb')
    """
    return list(COLORS if count <= len(COLORS) else COLORS + MORE_COLORS)
