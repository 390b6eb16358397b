"""What a drawing and a summary show: the parts of a graph, laid out from the builder's record.

One *part* per node of the record; a construct's part holds inner parts (a loop's
head, body and halt condition; a gate's router, experts and join; a switch's
selector, branches and join; a map's head, body and join), and a nested graph's
part holds the parts of that graph, down to the depth asked for. Parameters are
counted while the parts are laid out, in order, so that `g.dot()` and
`g.summary()` count each tensor once and agree.

Part names are unique in the whole drawing: a node of this graph is its id
(``Linear_0``); inner parts extend the construct's name (``gate_0.expert_1``);
nodes of a nested graph extend the nested node's name (``encoder.Linear_0``).
The input of a nested graph takes the nested node's own name, so that the name
of every node of the record is a node of the drawing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from flowdl._control.gate import Gate
from flowdl._control.loop import Loop
from flowdl._control.map import Map
from flowdl._control.switch import Switch
from flowdl._describe import type_name
from flowdl._draw.params import ParameterCount, ParameterCounter
from flowdl._draw.styles import module_style
from flowdl._executor.core import GraphCore
from flowdl._ir.nodes import Node, NodeKind


@dataclass(frozen=True)
class Edge:
    """An arrow between two parts; `kind` picks its style (`styles.EDGE_STYLES`)."""

    tail: str
    head: str
    kind: str
    label: str = ""
    width: float = 0.0  # a pen width for DOT; 0: the style's own


@dataclass(eq=False)
class Part:
    """One box of the drawing (a leaf), or a cluster of inner parts (a composite).

    Attributes:
        name: unique in the drawing: the DOT node (leaf) or cluster (composite) name.
        style: the node style of a leaf, the cluster style of a composite.
        title: the first line of its label.
        kind: what it is, in words (``module``, ``loop ×3``, ``gate (2 experts)``).
        fn: the module or callable it runs, if any.
        node: the record's node, for the parts that are nodes of a graph.
        owner: the graph that `node` belongs to.
        tags: the node's tags.
        params: its parameters (a composite: all of its inner parts').
        inner: a construct's inner parts, the head first.
        graph: a nested graph's parts, when it is drawn open.
        edges: arrows among the inner parts.
        entry: the DOT node that the part's stream input goes to.
        exit: the DOT node that its output leaves from.
        ref_entries: the DOT node each `using` reference goes to, in order.
        structural: a part of the construct's drawing, not a module (loop and map
            heads, joins); summaries leave it out.
    """

    name: str
    style: str
    title: str
    kind: str
    fn: Any = None
    node: Node | None = None
    owner: GraphCore | None = None
    tags: tuple[str, ...] = ()
    params: ParameterCount = field(default_factory=ParameterCount)
    inner: list[Part] = field(default_factory=list)
    graph: GraphParts | None = None
    edges: list[Edge] = field(default_factory=list)
    entry: str = ""
    exit: str = ""
    ref_entries: tuple[str, ...] = ()
    structural: bool = False

    def __post_init__(self) -> None:
        self.entry = self.entry or self.name
        self.exit = self.exit or self.name

    @property
    def children(self) -> list[Part]:
        """The inner parts of a construct, or the parts of an open nested graph."""
        if self.graph is not None:
            return self.graph.parts
        return self.inner

    def ref_entry(self, i: int) -> str:
        """Where reference `i` goes: the receiver's entry (or its i-th extra input)."""
        return self.ref_entries[i] if i < len(self.ref_entries) else self.entry


@dataclass(eq=False)
class GraphParts:
    """The parts of one graph, one per node of its record (by node index), and its edges."""

    graph: GraphCore
    parts: list[Part]
    edges: list[Edge]
    entries: tuple[str, ...]
    exit: str


def layout(graph: GraphCore, depth: int | None) -> GraphParts:
    """The parts of `graph`, opening nested graphs `depth` levels deep (``None``: all)."""
    return _Layout(depth).graph_parts(graph, prefix="", head=None, level=0)


class _Layout:
    def __init__(self, depth: int | None) -> None:
        self.depth = depth
        self.counter = ParameterCounter()

    def graph_parts(
        self, graph: GraphCore, prefix: str, head: str | None, level: int
    ) -> GraphParts:
        record = graph._record
        parts = []
        for node in record.nodes:
            if head is not None and node.index == record.inputs[0]:
                name, title = head, "x"
            else:
                name, title = prefix + node.id, node.id
            parts.append(self.node_part(graph, node, name, title, level))
        edges: list[Edge] = []
        for node in record.nodes:
            part = parts[node.index]
            for k, producer in enumerate(node.inputs):
                tail = parts[producer].exit
                if k < node.n_stream:
                    edges.append(Edge(tail, part.entry, "stream"))
                else:
                    r = k - node.n_stream
                    edges.append(Edge(tail, part.ref_entry(r), "reference", node.ref_names[r]))
        for tag, writer in record.state_writers.items():
            for node in record.nodes:
                if node.kind is NodeKind.STATE_READ and node.state_tag == tag:
                    edges.append(
                        Edge(parts[writer].exit, parts[node.index].entry, "state", f"state:{tag}")
                    )
        return GraphParts(
            graph,
            parts,
            edges,
            entries=tuple(parts[i].entry for i in record.inputs),
            exit=parts[record.output].exit,
        )

    def node_part(self, graph: GraphCore, node: Node, name: str, title: str, level: int) -> Part:
        tags = tuple(node.tags)
        common: dict[str, Any] = {"node": node, "owner": graph, "tags": tags}
        if node.kind is NodeKind.INPUT:
            return Part(name, "input", title, "input", **common)
        if node.kind is NodeKind.STATE_READ:
            init = graph._record.state_inits.get(node.state_tag or "")
            extra = [init] if isinstance(init, nn.Parameter) else []
            return Part(
                name,
                "state",
                title,
                f"state: previous {node.state_tag}",
                params=self.counter.take(name, None, extra),
                **common,
            )
        if node.kind is NodeKind.RESIDUAL:
            return Part(name, "residual", "+", "residual: stream + module", **common)
        fn = node.module
        if node.kind is NodeKind.MERGE:
            kind = f"merge: {type_name(fn)}"
            return Part(
                name, "merge", title, kind, fn, params=self.counter.take(name, fn), **common
            )
        if isinstance(fn, Loop):
            return self.loop(name, fn, level, common)
        if isinstance(fn, Gate):
            return self.gate(name, fn, level, common)
        if isinstance(fn, Switch):
            return self.switch(name, fn, level, common)
        if isinstance(fn, Map):
            return self.map(name, fn, graph, node, level, common)
        return self.callable_part(name, title, fn, level, **common)

    # ------------------------------------------------------------ callables

    def callable_part(
        self, name: str, title: str, fn: Any, level: int, style: str | None = None, **common: Any
    ) -> Part:
        """A module or callable: a box, or the open drawing of a nested graph."""
        if isinstance(fn, GraphCore):
            earlier = self.counter.first_use(name, fn)
            if earlier is None and (self.depth is None or level < self.depth):
                return self.nested(name, fn, level, common)
            return Part(
                name,
                "graph",
                title,
                fn.short_description(),
                fn,
                params=self.counter.take(name, fn),
                **common,
            )
        return Part(
            name,
            style or module_style(fn),
            title,
            type_name(fn),
            fn,
            params=self.counter.take(name, fn),
            **common,
        )

    def nested(self, name: str, fn: GraphCore, level: int, common: dict[str, Any]) -> Part:
        inner = self.graph_parts(fn, prefix=name + ".", head=name, level=level + 1)
        total = sum((p.params for p in inner.parts), ParameterCount())
        total += self.counter.leftover(name, fn)
        return Part(
            name,
            "graph",
            name,
            fn.short_description(),
            fn,
            params=total.outside(name),
            graph=inner,
            entry=inner.entries[0],
            exit=inner.exit,
            ref_entries=inner.entries[1:],
            **common,
        )

    def composite(
        self,
        name: str,
        fn: Any,
        kind: str,
        inner: list[Part],
        common: dict[str, Any],
        **fields: Any,
    ) -> Part:
        total = sum((p.params for p in inner), ParameterCount()) + self.counter.leftover(name, fn)
        style = kind.split()[0]  # loop, gate, switch, map: a cluster style
        params = total.outside(name)
        return Part(name, style, name, kind, fn, params=params, inner=inner, **fields, **common)

    # ----------------------------------------------------------- constructs

    def loop(self, name: str, fn: Loop, level: int, common: dict[str, Any]) -> Part:
        bound = f"×{fn.max_iter}" if fn.mode == "for" else f"≤ {fn.max_iter}"
        head_title = bound if fn.mode == "for" else f"{fn.mode} {bound}"
        head = Part(name, "loop", head_title, "loop head", structural=True)
        body = self.callable_part(f"{name}.body", f"body: {type_name(fn.body)}", fn.body, level)
        inner = [head, body]
        edges = [Edge(name, body.entry, "stream"), Edge(body.exit, name, "repeat", bound)]
        if fn.cond is not None:
            when = "before each" if fn.mode == "while" else "after each"
            cond = self.callable_part(
                f"{name}.cond", f"halt: {type_name(fn.cond)}", fn.cond, level, style="condition"
            )
            inner.append(cond)
            edges.append(Edge(name, cond.entry, "halt", when))
        return self.composite(
            name,
            fn,
            f"loop {head_title}",
            inner,
            common,
            edges=edges,
            ref_entries=body.ref_entries or (body.entry,),
        )

    def gate(self, name: str, fn: Gate, level: int, common: dict[str, Any]) -> Part:
        n = len(fn.experts)
        k = getattr(fn.router, "k", None)
        kind = f"gate ({n} experts)"
        if fn.sparse:
            kind = (
                f"gate top-{k} of {n} experts" if isinstance(k, int) else f"gate sparse {kind[5:]}"
            )
        head = ("router", fn.router)
        return self.routed(name, fn, kind, head, ("expert", fn.experts), "Σ", level, common)

    def switch(self, name: str, fn: Switch, level: int, common: dict[str, Any]) -> Part:
        kind = f"switch ({len(fn.branches)} branches)"
        head = ("selector", fn.selector)
        return self.routed(name, fn, kind, head, ("branch", fn.branches), "", level, common)

    def routed(
        self,
        name: str,
        fn: Any,
        kind: str,
        head: tuple[str, Any],
        alternatives: tuple[str, Any],
        join_title: str,
        level: int,
        common: dict[str, Any],
    ) -> Part:
        """A gate or a switch: the router or selector (the head, taking the references),
        an edge to every expert or branch, and the join of their outputs."""
        role, decider = head
        # a nested graph as router is a cluster of its own: named apart from the gate's
        head_name = f"{name}.{role}" if isinstance(decider, GraphCore) else name
        first = self.callable_part(head_name, f"{role}: {type_name(decider)}", decider, level, role)
        what, fns = alternatives
        choices = [
            self.callable_part(f"{name}.{what}_{i}", f"[{i}] {type_name(c)}", c, level)
            for i, c in enumerate(fns)
        ]
        join = Part(f"{name}.out", "join", join_title, "join", structural=True)
        edges = _route_edges(first.exit, [c.entry for c in choices], what, fn)
        edges += [Edge(c.exit, join.name, "join") for c in choices]
        return self.composite(
            name,
            fn,
            kind,
            [first, *choices, join],
            common,
            edges=edges,
            entry=first.entry,
            exit=join.name,
            ref_entries=first.ref_entries or (first.entry,),
        )

    def map(
        self, name: str, fn: Map, graph: GraphCore, node: Node, level: int, common: dict[str, Any]
    ) -> Part:
        if fn.mode == "slices":
            mode = f"slices({fn.n_slices})"
        elif fn.mode == "over":
            mode = f"over {_over_tag(graph, node)}"
        else:
            mode = "each"
        if fn.batched:
            mode += ", batched"
        head = Part(name, "map", mode, "map head", structural=True)
        body = self.callable_part(f"{name}.body", f"body: {type_name(fn.body)}", fn.body, level)
        join = Part(f"{name}.out", "join", "cat", "join", structural=True)
        pieces = "slices" if fn.mode == "slices" else "rows"
        edges = [
            Edge(name, body.entry, "stream", "batch" if fn.batched else pieces),
            Edge(body.exit, join.name, "join"),
        ]
        return self.composite(
            name,
            fn,
            f"map {mode}",
            [head, body, join],
            common,
            edges=edges,
            exit=join.name,
            ref_entries=body.ref_entries or (body.entry,),
        )


def _route_edges(tail: str, heads: list[str], what: str, fn: Gate | Switch) -> list[Edge]:
    """The edges from a router or selector to each expert or branch: ``w[i]`` or ``i``;
    once the routing is watched (`Graph.routing`), the share of the last forward's
    samples each received (and a gate's mean weight), drawn wider for a larger share."""
    labels = [f"w[{i}]" if what == "expert" else str(i) for i in range(len(heads))]
    usage = fn.routing_usage()
    if usage is None:
        return [Edge(tail, head, "route", text) for head, text in zip(heads, labels, strict=True)]
    fractions = usage.fraction.tolist()
    means = usage.mean_weight.detach().tolist() if usage.mean_weight is not None else None
    edges = []
    for i, (head, text) in enumerate(zip(heads, labels, strict=True)):
        text += f" {fractions[i]:.0%}"
        if means is not None:
            text += f" w̄={means[i]:.2f}"
        edges.append(Edge(tail, head, "route", text, width=round(0.5 + 4.5 * fractions[i], 2)))
    return edges


def _over_tag(graph: GraphCore, node: Node) -> str:
    """The tag of ``.map(body).over(tag)``, from the terminator call after ``.map``."""
    for call in graph._record.calls:
        if call.index > node.call.index and call.method == "over":
            return str(call.args[0])
    return "?"


def walk(parts: list[Part]) -> list[Part]:
    """Every part, depth first, composites before their children."""
    out: list[Part] = []
    for part in parts:
        out.append(part)
        out += walk(part.children)
    return out


def all_edges(graph_parts: GraphParts) -> list[Edge]:
    """The edges of the graph, of its constructs and of its open nested graphs."""
    edges = list(graph_parts.edges)
    for part in graph_parts.parts:
        edges += _part_edges(part)
    return edges


def _part_edges(part: Part) -> list[Edge]:
    edges = list(part.edges)
    if part.graph is not None:
        edges += all_edges(part.graph)
    for inner in part.inner:
        edges += _part_edges(inner)
    return edges
