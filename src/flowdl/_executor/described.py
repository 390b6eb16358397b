"""`Described`: what a graph says about itself (inputs, label, tags, levels, repr).

A mixin of `GraphCore` (``flowdl._executor.core``), kept apart so the core holds the
running of a graph and this file its description.
"""

from __future__ import annotations

from flowdl._describe import plural
from flowdl._executor.plan import Plan
from flowdl._executor.render import render_chain
from flowdl._ir.record import FlowRecord

__all__ = ["Described"]


class Described:
    """The description properties of a graph: read from its record and plan."""

    _plan: Plan
    _record: FlowRecord

    @property
    def n_inputs(self) -> int:
        """How many inputs the graph is called with (``x`` plus `Flow.input` names)."""
        return self._plan.n_inputs

    @property
    def input_names(self) -> tuple[str, ...]:
        """The names of the inputs, in call order; the first is ``"x"``."""
        return self._plan.input_names

    @property
    def label(self) -> str | None:
        """The name given by `Flow.label`, or ``None``."""
        return self._record.label

    @property
    def tags(self) -> tuple[str, ...]:
        """Every tag of this graph, in the order they were defined."""
        return tuple(self._record.tags)

    @property
    def tag_groups(self) -> dict[str, tuple[str, ...]]:
        """Tag groups from `Flow.tag_group`: group -> member tags."""
        return dict(self._record.groups)

    @property
    def levels(self) -> tuple[tuple[str, ...], ...]:
        """Node ids by level: level 0 holds the inputs; the nodes of a level are independent."""
        by_level: dict[int, list[str]] = {}
        for node in self._record.nodes:
            by_level.setdefault(self._plan.node_levels[node.index], []).append(node.id)
        return tuple(tuple(by_level[k]) for k in sorted(by_level))

    def short_description(self) -> str:
        """``Graph 'encoder'`` when labelled, else ``Graph(5 nodes)``."""
        if self.label is not None:
            return f"Graph {self.label!r}"
        return f"Graph({plural(len(self._record.nodes), 'node')})"

    def __repr__(self) -> str:
        return render_chain(self._record)
