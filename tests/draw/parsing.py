"""Reading DOT text back with pydot (a parser independent of flowdl's writer).

pydot parses DOT in pure Python, so these tests need no Graphviz; `test_svg.py`
checks separately that Graphviz itself accepts the text.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import pydot

_DEFAULTS = {"graph", "node", "edge"}


def unquote(text: str) -> str:
    """A DOT ID or attribute value as Graphviz shows it: quotes off, escapes resolved."""
    if not (len(text) >= 2 and text[0] == '"' and text[-1] == '"'):
        return text
    out = []
    chars = iter(text[1:-1])
    for c in chars:
        if c == "\\":
            nxt = next(chars)
            out.append("\n" if nxt == "n" else nxt)
        else:
            out.append(c)
    return "".join(out)


@dataclass
class Cluster:
    name: str
    attributes: dict[str, str]
    nodes: list[str] = field(default_factory=list)
    clusters: list[str] = field(default_factory=list)
    parent: str | None = None


@dataclass
class Edge:
    tail: str
    head: str
    attributes: dict[str, str]

    @property
    def label(self) -> str:
        return self.attributes.get("label", "")


@dataclass
class Dot:
    attributes: dict[str, str]
    nodes: dict[str, dict[str, str]]
    edges: list[Edge]
    clusters: dict[str, Cluster]
    node_cluster: dict[str, str | None]

    def label(self, node: str) -> str:
        return self.nodes[node].get("label", "")

    def edges_between(self, tail: str, head: str) -> list[Edge]:
        return [e for e in self.edges if e.tail == tail and e.head == head]

    def ancestors(self, node: str) -> list[str]:
        """The clusters around `node`, innermost first."""
        chain = []
        cluster = self.node_cluster[node]
        while cluster is not None:
            chain.append(cluster)
            cluster = self.clusters[cluster].parent
        return chain


def _attributes(raw: dict[str, str]) -> dict[str, str]:
    return {k: unquote(str(v)) for k, v in raw.items()}


def parse(text: str) -> Dot:
    with warnings.catch_warnings():
        # pydot 4.0 calls pyparsing's camelCase names, which pyparsing 3.3 deprecates.
        warnings.simplefilter("ignore", DeprecationWarning)
        graphs = pydot.graph_from_dot_data(text)
    assert graphs is not None, "not DOT"
    assert len(graphs) == 1, "not one digraph"
    top = graphs[0]
    dot = Dot({}, {}, [], {}, {})

    def visit(graph: pydot.Graph, cluster: str | None, attributes: dict[str, str]) -> None:
        for node in graph.get_nodes():
            name = unquote(node.get_name())
            if name == "graph":
                attributes.update(_attributes(node.get_attributes()))
                continue
            if name in _DEFAULTS:
                continue
            assert name not in dot.nodes, f"node {name!r} declared twice"
            dot.nodes[name] = _attributes(node.get_attributes())
            dot.node_cluster[name] = cluster
            if cluster is not None:
                dot.clusters[cluster].nodes.append(name)
        for edge in graph.get_edges():
            dot.edges.append(
                Edge(
                    unquote(edge.get_source()),
                    unquote(edge.get_destination()),
                    _attributes(edge.get_attributes()),
                )
            )
        for sub in graph.get_subgraphs():
            name = unquote(sub.get_name())
            assert name not in dot.clusters, f"cluster {name!r} declared twice"
            dot.clusters[name] = Cluster(name, {}, parent=cluster)
            if cluster is not None:
                dot.clusters[cluster].clusters.append(name)
            visit(sub, name, dot.clusters[name].attributes)

    visit(top, None, dot.attributes)
    for edge in dot.edges:  # an edge to an undeclared node would create a stray node
        assert edge.tail in dot.nodes, f"edge from undeclared node {edge.tail!r}"
        assert edge.head in dot.nodes, f"edge to undeclared node {edge.head!r}"
    return dot
