"""`g.summary()`: a table of the nodes, with kinds, tags, output shapes and parameters."""

from __future__ import annotations

import html
import io
import itertools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from torch import Tensor

from flowdl._draw.parts import Part, layout
from flowdl._executor.core import GraphCore
from flowdl._profile.profiling import profile_of

if TYPE_CHECKING:
    from rich.table import Table


@dataclass(frozen=True)
class SummaryRow:
    """One row of a `Summary`.

    Attributes:
        name: the part's name, as in ``g.dot()`` (``Linear_0``, ``gate_0.expert_1``).
        level: 0 for a node of the graph, 1 for what is inside it, and so on.
        kind: what it is (``Linear``, ``loop ×3``, ``gate (2 experts)``, ``input``...).
        tags: its tags.
        output_shape: the shape of its output in the last forward, when known.
        parameters: the scalars it counts (each tensor once in the whole table).
        trainable: of those, the ones that require grad.
        shared: scalars it uses that an earlier row counted.
        shared_with: those rows.
        same_module_as: the row that had this very module before, if any.
    """

    name: str
    level: int
    kind: str
    tags: tuple[str, ...]
    output_shape: tuple[int, ...] | None
    parameters: int
    trainable: int
    shared: int
    shared_with: tuple[str, ...]
    same_module_as: str | None


class Summary:
    """The table `Graph.summary` returns: ``print()`` it, or read its rows.

    ``str(summary)`` (and the summary's ``repr``, so a notebook or an interactive
    session shows it as it is) is the table as plain text; `rich` renders it in
    colour (``rich.print(summary)``).

    Attributes:
        title: ``Graph`` or ``Graph 'name'``.
        rows: one `SummaryRow` per node (and per inner part, with ``depth``).
        total_parameters: all parameters, each tensor once: the sum of
            ``p.numel()`` over ``g.parameters()``.
        trainable_parameters: those that require grad.
    """

    def __init__(self, title: str, rows: tuple[SummaryRow, ...]) -> None:
        self.title = title
        self.rows = rows
        top = [row for row in rows if row.level == 0]
        self.total_parameters = sum(row.parameters for row in top)
        self.trainable_parameters = sum(row.trainable for row in top)
        self._has_children = {
            row.name for row, following in itertools.pairwise(rows) if following.level > row.level
        }

    @property
    def frozen_parameters(self) -> int:
        """Parameters that do not require grad."""
        return self.total_parameters - self.trainable_parameters

    def table(self) -> Table:
        """The table as a `rich.table.Table`."""
        from rich import box  # rich is loaded by the first table, not by `import flowdl`
        from rich.table import Table

        table = Table(title=self.title, box=box.SIMPLE_HEAD, title_justify="left")
        for column, justify in (
            ("node", "left"),
            ("kind", "left"),
            ("tags", "left"),
            ("output shape", "left"),
            ("parameters", "right"),
            ("trainable", "right"),
        ):
            table.add_column(column, justify=justify)  # type: ignore[arg-type]
        for row in self.rows:
            table.add_row(
                "  " * row.level + row.name,
                row.kind,
                " ".join(row.tags),
                _shape(row.output_shape),
                self._parameters(row),
                f"{row.trainable:,}",
            )
        table.caption = self._caption()
        table.caption_justify = "left"
        return table

    def _parameters(self, row: SummaryRow) -> str:
        text = f"{row.parameters:,}"
        if row.name in self._has_children and row.parameters:
            text = "Σ " + text
        if row.same_module_as is not None:
            text += f" (same module as {row.same_module_as})"
        elif row.shared:
            text += f" (+{row.shared:,} shared with {', '.join(row.shared_with)})"
        return text

    def _caption(self) -> str:
        text = (
            f"{self.total_parameters:,} parameters: {self.trainable_parameters:,} trainable, "
            f"{self.frozen_parameters:,} frozen"
        )
        if any(row.shared or row.same_module_as for row in self.rows):
            text += "; a tensor used twice is counted once, where it is first used"
        return text

    def _repr_html_(self) -> str:
        """The table as HTML, for Jupyter (names and kinds escaped).

        Example:
            >>> import torch, flowdl as fl
            >>> html = fl.Flow(torch.nn.Linear(2, 4)).build().summary()._repr_html_()
            >>> html.startswith("<table"), ">Linear_0</td>" in html, "12 parameters" in html
            (True, True, True)
        """
        head = "".join(
            f'<th style="text-align:{align}">{name}</th>'
            for name, align in (
                ("node", "left"),
                ("kind", "left"),
                ("tags", "left"),
                ("output shape", "left"),
                ("parameters", "right"),
                ("trainable", "right"),
            )
        )
        body = []
        for row in self.rows:
            left = ' style="text-align:left"'
            indent = f"padding-left:{0.5 + 1.2 * row.level:.1f}em;" if row.level else ""
            cells = [
                f'<td style="{indent}text-align:left">{html.escape(row.name)}</td>',
                f"<td{left}>{html.escape(row.kind)}</td>",
                f"<td{left}>{html.escape(' '.join(row.tags))}</td>",
                f"<td{left}>{html.escape(_shape(row.output_shape))}</td>",
                f'<td style="text-align:right">{html.escape(self._parameters(row))}</td>',
                f'<td style="text-align:right">{row.trainable:,}</td>',
            ]
            body.append("<tr>" + "".join(cells) + "</tr>")
        return (
            f'<table class="flowdl-summary"><caption style="text-align:left">'
            f"<b>{html.escape(self.title)}</b></caption><thead><tr>{head}</tr></thead>"
            f'<tbody>{"".join(body)}</tbody><tfoot><tr><td colspan="6" '
            f'style="text-align:left">{html.escape(self._caption())}</td></tr></tfoot></table>'
        )

    def __rich__(self) -> Table:
        return self.table()

    def __str__(self) -> str:
        from rich.console import Console

        console = Console(
            file=io.StringIO(),
            width=200,
            color_system=None,
            force_terminal=False,
            force_jupyter=False,  # in a notebook rich would display it, not return it
            highlight=False,
            emoji=False,
            legacy_windows=False,
        )
        console.print(self.table())
        output = console.file.getvalue()  # type: ignore[attr-defined]
        return "\n".join(line.rstrip() for line in output.splitlines()).strip("\n")

    __repr__ = __str__


def build_summary(graph: GraphCore, depth: int | None) -> Summary:
    """The summary of `graph`, showing what is inside nodes `depth` levels deep."""
    top = layout(graph, depth)
    rows: list[SummaryRow] = []

    def add(part: Part, level: int, parent: Part | None) -> None:
        name = part.name
        if parent is not None and name == parent.name:  # a gate's router, a switch's selector
            name += f" ({part.title.split(':')[0]})"
        count = part.params
        rows.append(
            SummaryRow(
                name=name,
                level=level,
                kind=part.kind,
                tags=part.tags,
                output_shape=_output_shape(part),
                parameters=count.total,
                trainable=count.trainable,
                shared=count.shared,
                shared_with=count.shared_with,
                same_module_as=count.same_module_as,
            )
        )
        if depth is None or level < depth:
            for child in part.children:
                if child.structural or (child.style == "input" and child.name == part.name):
                    continue  # loop and map heads, joins, a nested graph's own input
                add(child, level + 1, part)

    for part in top.parts:
        add(part, 0, None)
    title = f"Graph {graph.label!r}" if graph.label is not None else "Graph"
    return Summary(title, tuple(rows))


def _output_shape(part: Part) -> tuple[int, ...] | None:
    """From the owner's last profile if it has one, else from a tagged value."""
    graph, node = part.owner, part.node
    if graph is None or node is None:
        return None
    profile = profile_of(graph)
    if profile is not None:
        for timing in profile.nodes:
            if timing.id == node.id:
                return timing.output_shape
    for tag in node.tags:
        value: Any = graph.tagged(tag)
        if isinstance(value, Tensor):
            return tuple(value.shape)
    return None


def _shape(shape: tuple[int, ...] | None) -> str:
    return "-" if shape is None else "[" + ", ".join(str(d) for d in shape) + "]"
