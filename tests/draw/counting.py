"""Reading the parameter counts back from a drawing's labels."""

from __future__ import annotations

import re

from tests.draw.parsing import Dot

_COUNT = re.compile(r"^(Σ )?(\d+) params")


def leaf_counts(dot: Dot) -> dict[str, int]:
    """``{node: scalars}`` for every node whose label counts parameters (exact counts only)."""
    counts = {}
    for name, attributes in dot.nodes.items():
        for line in attributes.get("label", "").split("\n"):
            match = _COUNT.match(line)
            if match:
                assert not match.group(1), f"a leaf node {name!r} with a Σ total"
                counts[name] = int(match.group(2))
    return counts


def cluster_total(dot: Dot, cluster: str) -> int:
    """The ``Σ n params`` of a cluster's label (0 without one)."""
    for line in dot.clusters[cluster].attributes.get("label", "").split("\n"):
        match = _COUNT.match(line)
        if match:
            assert match.group(1), f"cluster {cluster!r} counts without Σ"
            return int(match.group(2))
    return 0


def total_of(graph: object) -> int:
    return sum(p.numel() for p in graph.parameters())  # type: ignore[attr-defined]
