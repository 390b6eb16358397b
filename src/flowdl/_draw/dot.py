"""`g.dot()`: the DOT text of a graph, from its parts; with a profile, a heat map.

The top graph's nodes are grouped in one dashed cluster per level. A construct
is a cluster of its inner parts; an open nested graph is a cluster of its nodes.
Labels carry the id, what the part is, its parameters (each tensor counted once,
reuse marked), its tags and, when profiled, its time. Edges: solid for the
stream, dashed blue for `using` references (labelled with the tag), dotted orange
for state carried to the next call (``state:<tag>``), dashed orange for routing
(``w[i]`` for gate weights, ``i`` for switch branches; once `Graph.routing` watches
the construct, each carries its share of the last forward's samples, and its width
grows with it), purple for a loop's
repeat (``×n``, ``≤ max_iter``) and its halt condition.
"""

from __future__ import annotations

from flowdl._describe import describe_module
from flowdl._draw.dot_text import Attributes, DotWriter, label
from flowdl._draw.params import ParameterCount, compact_count
from flowdl._draw.parts import Part, all_edges, layout, walk
from flowdl._draw.styles import CLUSTER_STYLES, EDGE_STYLES, NODE_STYLES, heat
from flowdl._executor.core import GraphCore
from flowdl._format import format_precise_duration
from flowdl._profile.profile import NodeTiming, Profile


def render_dot(graph: GraphCore, depth: int | None, profile: Profile | None) -> str:
    """The DOT text of `graph`, nested graphs open `depth` levels deep (``None``: all)."""
    top = layout(graph, depth)
    writer = DotWriter("flowdl")
    graph_attributes: Attributes = {
        "rankdir": "TB",
        "compound": "true",
        "fontname": "Helvetica",
        "nodesep": "0.3",
        "ranksep": "0.35",
    }
    title = [f"Graph {graph.label!r}"] if graph.label is not None else []
    if profile is not None:
        runs = f" (median of {profile.runs} runs)" if profile.runs > 1 else ""
        title.append(f"Forward: {format_precise_duration(profile.total_seconds)}{runs}")
    if title:
        graph_attributes.update({"label": label(title), "labelloc": "t", "fontsize": "14"})
    writer.defaults("graph", graph_attributes)
    writer.defaults("node", {"fontname": "Helvetica", "fontsize": "11", "style": "filled"})
    writer.defaults("edge", {"fontname": "Helvetica", "fontsize": "9"})

    timings = {t.id: t for t in profile.nodes} if profile is not None else {}
    level_timings = {t.index: t for t in profile.levels} if profile is not None else {}
    heat_max = profile.max_node_seconds if profile is not None else 0.0
    levels = graph._plan.node_levels
    by_level: dict[int, list[Part]] = {}
    for part in top.parts:
        assert part.node is not None
        by_level.setdefault(levels[part.node.index], []).append(part)
    for index in sorted(by_level):
        text = f"level {index}"
        timing = level_timings.get(index)
        if timing is not None:
            text += f"  {format_precise_duration(timing.wall_seconds)}"
            if timing.n_nodes > 1:
                text += f"  ×{timing.parallelism:.2f}"
        with writer.subgraph(f"cluster_level_{index}", {**CLUSTER_STYLES["level"], "label": text}):
            for part in by_level[index]:
                node_id = part.node.id if part.node is not None else ""
                _draw(writer, part, timings.get(node_id), heat_max)

    taken = {p.name for p in walk(top.parts)}
    output = "output"
    while output in taken:
        output += "_"
    writer.node(output, {**NODE_STYLES["output"], "label": label(["output"])})
    for edge in all_edges(top):
        attributes = dict(EDGE_STYLES[edge.kind])
        if edge.label:
            attributes["label"] = label([edge.label])
        if edge.width:
            attributes["penwidth"] = str(edge.width)
        writer.edge(edge.tail, edge.head, attributes)
    writer.edge(top.exit, output, dict(EDGE_STYLES["stream"]))
    return writer.text()


def _draw(writer: DotWriter, part: Part, timing: NodeTiming | None, heat_max: float) -> None:
    """A leaf as one node; a composite as a cluster of its children."""
    time_line = [format_precise_duration(timing.seconds)] if timing is not None else []
    if not part.children:
        lines = [part.title]
        if part.style == "graph":  # a nested graph drawn closed
            lines.append(part.kind)
        lines += [*parameter_lines(part.params), *_tag_line(part), *time_line]
        attributes = {**NODE_STYLES[part.style], "label": label(lines)}
        if part.style in ("router", "selector"):
            attributes["ordering"] = "out"  # experts and branches left to right, in order
        if part.fn is not None:
            tooltip = f"{part.name}: {describe_module(part.fn)}"
            if timing is not None:  # profiled: the output's shape and the node's time
                if timing.output_shape is not None:
                    tooltip += f"\noutput shape: {tuple(timing.output_shape)}"
                tooltip += f"\ntime: {format_precise_duration(timing.seconds)}"
            attributes["tooltip"] = tooltip
        if timing is not None:
            attributes["fillcolor"] = heat(timing.seconds / heat_max if heat_max > 0 else 0.0)
        writer.node(part.name, attributes)
        return
    lines = [_cluster_title(part)]
    lines += [
        f"Σ {line}" if line.endswith("params") or "frozen)" in line else line
        for line in parameter_lines(part.params)
    ]
    lines += [*_tag_line(part), *time_line]
    attributes = {**CLUSTER_STYLES[part.style], "label": label(lines), "fontsize": "10"}
    if timing is not None:
        attributes["color"] = heat(timing.seconds / heat_max if heat_max > 0 else 0.0)
        attributes["penwidth"] = "3"
    with writer.subgraph(f"cluster_{part.name}", attributes):
        for child in part.children:
            _draw(writer, child, None, heat_max)


def _cluster_title(part: Part) -> str:
    if part.graph is not None and part.name.rsplit(".", 1)[-1] == getattr(part.fn, "label", None):
        return part.kind  # Graph 'encoder'
    return f"{part.name}: {part.kind}"


def parameter_lines(count: ParameterCount) -> list[str]:
    """``72 params``, then what the part shares with parts that counted it first."""
    lines = []
    if count.total:
        frozen = count.total - count.trainable
        text = f"{compact_count(count.total)} params"
        if frozen:
            text += " (frozen)" if frozen == count.total else f" ({compact_count(frozen)} frozen)"
        lines.append(text)
    if count.same_module_as is not None:
        lines.append(f"same module as {count.same_module_as}")
    elif count.shared:
        names = list(count.shared_with)
        listed = ", ".join(names[:2]) + (", …" if len(names) > 2 else "")
        lines.append(f"shares {compact_count(count.shared)} with {listed}")
    return lines


def _tag_line(part: Part) -> list[str]:
    return [" ".join(f"#{tag}" for tag in part.tags)] if part.tags else []
