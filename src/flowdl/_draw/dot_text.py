"""Writing DOT text: quoting, escaping, attribute lists, nested subgraphs.

Every identifier and attribute value is written as a double-quoted DOT string, so
node names and labels may hold any character: `escape` doubles backslashes (DOT
reads ``\\N``, ``\\l``... as escapes otherwise), escapes double quotes and turns
line breaks into DOT's ``\\n``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager


def escape(text: str) -> str:
    r"""`text` as the inside of a DOT string that Graphviz shows exactly as written.

    Example:
        >>> print(escape('say "hi"\\now'))
        say \"hi\"\\now
        >>> print(escape("two\nlines"))
        two\nlines
    """
    return (
        text.replace("\\", "\\\\")
        .replace('"', '\\"')
        .replace("\r\n", "\n")
        .replace("\r", "\n")
        .replace("\n", "\\n")
    )


def quote(text: str) -> str:
    """`text` as a double-quoted DOT string (escaped)."""
    return f'"{escape(text)}"'


def label(lines: Sequence[str]) -> str:
    """Several lines as one quoted DOT label, centred line by line."""
    return '"' + "\\n".join(escape(line) for line in lines) + '"'


Attributes = dict[str, str]
"""DOT attributes; values are plain text, quoted on writing, except those made by `label`."""


def attribute_list(attributes: Attributes) -> str:
    """``[name="value" ...]``; values already quoted (from `label`) are kept as they are."""
    parts = []
    for name, value in attributes.items():
        written = value if _is_quoted(value) else quote(value)
        parts.append(f"{name}={written}")
    return "[" + " ".join(parts) + "]"


def _is_quoted(value: str) -> bool:
    return len(value) >= 2 and value.startswith('"') and value.endswith('"')


class DotWriter:
    """Accumulates the lines of a ``digraph``, indenting nested subgraphs."""

    def __init__(self, name: str) -> None:
        self._lines = [f"digraph {quote(name)} {{"]
        self._depth = 1

    def line(self, text: str) -> None:
        """A raw statement (already valid DOT)."""
        self._lines.append("  " * self._depth + text)

    def defaults(self, kind: str, attributes: Attributes) -> None:
        """``graph [...]``, ``node [...]`` or ``edge [...]``: defaults for what follows."""
        self.line(f"{kind} {attribute_list(attributes)};")

    def node(self, name: str, attributes: Attributes) -> None:
        self.line(f"{quote(name)} {attribute_list(attributes)};")

    def edge(self, tail: str, head: str, attributes: Attributes) -> None:
        written = f" {attribute_list(attributes)}" if attributes else ""
        self.line(f"{quote(tail)} -> {quote(head)}{written};")

    @contextmanager
    def subgraph(self, name: str, attributes: Attributes) -> Iterator[None]:
        """A ``subgraph`` block; a name starting with ``cluster`` draws a box around it."""
        self.line(f"subgraph {quote(name)} {{")
        self._depth += 1
        self.defaults("graph", attributes)
        try:
            yield
        finally:
            self._depth -= 1
            self.line("}")

    def text(self) -> str:
        """The finished DOT text."""
        return "\n".join([*self._lines, "}"]) + "\n"
