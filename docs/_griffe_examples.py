"""A Griffe extension for the documentation site: ``Example:`` sections are examples.

flowdl's docstrings head their doctests ``Example:`` (singular). Griffe's Google
parser reads only ``Examples:`` as an examples section and renders any other heading
as an admonition of Markdown text, where a doctest's output such as ``[1.0, 2.0]``
becomes a broken link. This extension renames the heading before parsing, so every
``>>>`` block renders as code. ``mkdocs.yml`` loads it; nothing in flowdl imports it.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_EXAMPLE = re.compile(r"^(\s*)Example:[ \t]*$", re.MULTILINE)


class ExampleSections(griffe.Extension):
    """Rename ``Example:`` to ``Examples:`` in every docstring Griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        """Rewrite the docstring of ``obj`` (called once for each object loaded)."""
        if obj.docstring is not None:
            obj.docstring.value = _EXAMPLE.sub(r"\1Examples:", obj.docstring.value)
