"""The graph tree: which labelled graphs are nested in a graph, and the check at build.

A graph's *children* are the labelled graphs found among its submodules without
going through another graph: node modules, the inner modules of constructs (loop
bodies and conditions, gate routers and experts, switch selectors and branches,
map bodies) and the submodules of plain modules. An unlabelled nested graph is
not part of the tree, and neither is what it holds: label it to reach into it.
"""

from __future__ import annotations

from collections.abc import Iterator

from torch import nn

from flowdl._errors import BuildError
from flowdl._executor.core import GraphCore
from flowdl._executor.plan import Plan

__all__ = ["TREE_CACHE", "check_children", "children", "nested_labelled", "walk"]

TREE_CACHE = "_tree_nested"
"""The graph attribute caching `nested_labelled`; copies and pickles leave it behind."""

Found = tuple[tuple[str, GraphCore, str], ...]


def nested_labelled(graph: GraphCore) -> Found:
    """``(label, child, where)`` for every labelled graph found under `graph`.

    `where` is the submodule path of the find (``gate_0.experts.1``). A child held
    at several places is reported at each. Computed once per plan of the graph and
    cached on it: replacing a submodule recompiles the plan (here and in every graph
    above), which makes the cache compute again; copies recompute it.
    """
    cached: tuple[Plan, Found] | None = graph.__dict__.get(TREE_CACHE)
    if cached is None or cached[0] is not graph._plan:
        cached = (graph._plan, tuple(_search(graph)))
        graph.__dict__[TREE_CACHE] = cached
    return cached[1]


def _search(graph: GraphCore) -> Iterator[tuple[str, GraphCore, str]]:
    seen: set[int] = set()
    stack: list[tuple[str, nn.Module]] = list(reversed(list(graph.named_children())))
    while stack:
        where, module = stack.pop()
        if isinstance(module, GraphCore):
            if module.label is not None:
                yield module.label, module, where
            continue
        if id(module) in seen:
            continue
        seen.add(id(module))
        inner = [(f"{where}.{name}", m) for name, m in module.named_children()]
        stack.extend(reversed(inner))


def children(graph: GraphCore) -> dict[str, GraphCore]:
    """``{label: child}`` for the labelled graphs directly nested in `graph`, in order."""
    found: dict[str, GraphCore] = {}
    for label, child, _ in nested_labelled(graph):
        found.setdefault(label, child)
    return found


def walk(graph: GraphCore) -> list[tuple[str, GraphCore]]:
    """``(prefix, graph)`` for `graph` and every graph of its tree, parents first.

    The prefix is the dotted path with a trailing dot (``""`` for `graph` itself,
    ``"encoder."``, ``"encoder.scan."``). A graph reachable along several paths is
    listed once, under the first.
    """
    out: list[tuple[str, GraphCore]] = []
    seen: set[int] = set()
    stack = [("", graph)]
    while stack:
        prefix, node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        out.append((prefix, node))
        stack.extend(reversed([(f"{prefix}{k}.", c) for k, c in children(node).items()]))
    return out


def check_children(graph: GraphCore, call: str) -> None:
    """Labels of one level name one graph each, and no tag or tag group of `graph`.

    A tag may share a label when it names the node holding that graph (``.through(
    encoder).tag("encoder")``): there both mean the same modules.

    Raises:
        BuildError: two different graphs with one label, or a label that is also the
            name of a tag or tag group of `graph` elsewhere.
    """
    first: dict[str, tuple[GraphCore, str]] = {}
    for label, child, where in nested_labelled(graph):
        if label not in first:
            first[label] = (child, where)
            continue
        other, other_where = first[label]
        if other is not child:
            raise BuildError(
                f"two different graphs are labelled {label!r} in this graph",
                call=call,
                expected="labels unique among the graphs nested at one level: they name "
                f"its children (paths such as '{label}.hidden')",
                received=f"{other.short_description()} at {other_where}, and another at {where}",
                fix="label one of them differently, or pass the same graph object twice to "
                "share its parameters",
            )
    record = graph._record
    for label, (child, where) in first.items():
        if label in record.groups:
            raise BuildError(
                f"the label {label!r} of a nested graph is also a tag group of this graph",
                call=call,
                expected="paths without ambiguity: a name at one level is a nested graph, "
                "a tag or a tag group",
                received=f"{child.short_description()} at {where}, and "
                f".tag_group({label!r}) naming {', '.join(record.groups[label])}",
                fix="rename the tag group or the nested graph's label",
            )
        node_index = record.tags.get(label)
        if node_index is None:
            continue
        node = record.nodes[node_index]
        holder = node.module
        if holder is child or (
            isinstance(holder, nn.Module) and any(m is child for m in holder.modules())
        ):
            continue
        raise BuildError(
            f"the label {label!r} of a nested graph is also a tag of another node",
            call=call,
            expected="paths without ambiguity: a name at one level is a nested graph or a "
            "tag (a tag may share the label of the graph its node holds)",
            received=f"{child.short_description()} at {where}, and .tag({label!r}) naming "
            f"{node.id} (from {node.call})",
            fix=f"rename the tag, e.g. .tag('{label}_out'), or the nested graph's label",
        )
