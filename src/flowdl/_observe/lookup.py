"""Name checks and messages shared by the observation methods."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from flowdl._describe import describe_value
from flowdl._executor.core import GraphCore
from flowdl._format import format_metric
from flowdl._tree.children import children
from flowdl._tree.paths import PathError, PathKind, check_local_name, describe_level

__all__ = ["children_labels", "expand_tags", "not_a_tag", "show_value"]


def children_labels(graph: GraphCore) -> set[str]:
    """Labels of the graphs nested directly in `graph`."""
    return set(children(graph))


def expand_tags(graph: GraphCore, tags: tuple[str, ...], call: str, at: str) -> list[str]:
    """Tags of `graph`, tag groups replaced by their members; unknown tags raise."""
    out: list[str] = []
    known = graph._record.tags
    for tag in tags:
        if isinstance(tag, str) and tag in known:  # valid by construction: the fast path
            out.append(tag)
            continue
        check_local_name(tag, call, at)
        members = graph._record.groups.get(tag)
        if members is not None:
            out.extend(members)
            continue
        if tag not in graph._record.tags:
            raise PathError(
                f"{call}: no tag {tag!r} in {graph.short_description()}",
                path=tag,
                exists=describe_level(graph, internal=True),
                fix="tag the value with .tag(name) when building the graph",
            )
        out.append(tag)
    return out


def not_a_tag(target: Any, path: str, call: str) -> PathError:
    wanted = {
        "g.collect_at()": "a tag or tag group",
        "g.tagged_at()": "a tag",
        "g.trend_at()": "a tag or a metric",
        "g.record_at()": "a tag or a metric name",
    }[call]
    return PathError(
        f"{call}: {target.name!r} is a {target.kind.value} of "
        f"{target.graph.short_description()}; expected {wanted}",
        path=path,
        exists=describe_level(target.graph, internal=not target.prefix),
        fix="g.trends(path) covers a tag group; nested graphs are reached by their paths"
        if target.kind is not PathKind.SUBGRAPH
        else f"name something inside it: '{path}.<tag>'",
    )


def show_value(value: Any) -> str:
    """A tagged value for the log line: its number, or mean and shape."""
    if isinstance(value, Tensor):
        if value.numel() == 1 and not value.is_complex():
            return format_metric(float(value.detach().reshape(()).item()))
        if value.numel() > 1 and not value.is_complex():
            mean = float(value.detach().double().mean().item())
            shape = ", ".join(str(d) for d in value.shape)
            return f"{format_metric(mean)} (mean of [{shape}])"
        return describe_value(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_metric(float(value))
    return describe_value(value)
