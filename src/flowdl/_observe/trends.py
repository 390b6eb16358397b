"""Trends, a feature of `fl.Graph`: reading histories as trends, latest metrics, resets."""

from __future__ import annotations

from flowdl._executor.core import GraphCore
from flowdl._observe.lookup import not_a_tag
from flowdl._observe.state import values_of
from flowdl._observe.tree_metrics import resolve_names, tree_histories
from flowdl._observe.trend import Trend
from flowdl._observe.trend_group import TrendGroup
from flowdl._tree.children import walk
from flowdl._tree.paths import PathError, PathKind, check_local_name, describe_level, resolve

__all__ = ["Trends", "trend_of"]


class Trends(GraphCore):
    """`trend`, `trend_at`, `trends`, `latest_metrics`, `reset_trend`."""

    def trend(self, tag: str) -> Trend:
        """The history of a tag or metric of this graph, one value per `flush`.

        Args:
            tag: a tag of this graph, or a metric given to `record`.

        Returns:
            the history, oldest first (empty before the first `flush`).

        Raises:
            KeyError: no tag and no metric of that name (the message lists them).
            ValueError: a dotted path (use `trend_at`) or a tag group (use `trends`).

        Example:
            >>> import flowdl as fl, torch
            >>> g = fl.Flow(torch.nn.Identity()).build()
            >>> for loss in (1.0, 0.8, 0.7):
            ...     g.record("loss", loss); _ = g.flush()
            >>> t = g.trend("loss")
            >>> t.values, t.improving(3), round(t.slope(), 6)
            ((1.0, 0.8, 0.7), True, -0.15)
        """
        return trend_of(self, tag)

    def trend_at(self, path: str) -> Trend:
        """`trend` anywhere in the tree: ``g.trend_at("encoder.hidden")``.

        Args:
            path: a tag or metric, or a dotted path to one in a nested graph.

        Returns:
            the history, oldest first.

        Raises:
            KeyError: the path names nothing, a nested graph or a tag group.

        Example:
            >>> import torch, flowdl as fl
            >>> encoder = fl.Flow(torch.nn.Identity()).tag("hidden").label("encoder").build()
            >>> g = fl.Flow(encoder).build()
            >>> for x in (3.0, 2.0):
            ...     _ = g(torch.tensor([x])); g.collect_at("encoder.hidden"); _ = g.flush()
            >>> g.trend_at("encoder.hidden").values
            (3.0, 2.0)
        """
        target = resolve(self, path, "g.trend_at()", prefer_names=True)
        if target.kind not in (PathKind.TAG, PathKind.METRIC):
            raise not_a_tag(target, path, "g.trend_at()")
        return trend_of(target.graph, target.name)

    def trends(self, *names: str) -> TrendGroup:
        """Several trends at once: tags, metrics, tag groups (their members), paths.

        Without names: every metric with a history in the tree, sorted by name.

        Args:
            *names: tags, metrics, tag groups or dotted paths; none for every metric.

        Returns:
            the trends, named, in the order asked (a group's members in order).

        Raises:
            KeyError: a name is neither a tag nor a metric, or a path names nothing.

        Example:
            >>> import torch, flowdl as fl
            >>> g = (fl.Flow(torch.nn.Identity()).split(torch.sin, torch.cos)
            ...        .tag_group("head").merge(fl.Add()).build())
            >>> for x in (0.5, 0.4, 0.3):
            ...     _ = g(torch.tensor(x)); g.collect("head"); _ = g.flush()
            >>> group = g.trends("head")
            >>> group.names, group.all_improving(), group.any_improving()  # sin falls, cos rises
            (('head_0', 'head_1'), False, True)
        """
        if not names:
            histories = tree_histories(self)
            return TrendGroup({name: Trend(histories[name]) for name in sorted(histories)})
        resolved = resolve_names(self, names, "g.trends()", known=True)
        return TrendGroup({dotted: trend_of(owner, local) for dotted, owner, local in resolved})

    def latest_metrics(self) -> dict[str, float]:
        """The newest history value of every metric of the tree, with dotted names.

        This graph's own names as they are, nested graphs' as paths
        (``"encoder.hidden"``); nested graphs' ``_``-prefixed names are left out.

        Returns:
            ``{name: newest value}``, this graph's names first.

        Example:
            >>> import torch, flowdl as fl
            >>> encoder = fl.Flow(torch.nn.Identity()).tag("hidden").label("encoder").build()
            >>> g = fl.Flow(encoder).build()
            >>> _ = g(torch.tensor([4.0])); g.collect_at("encoder.hidden")
            >>> g.record("loss", 0.5); _ = g.flush()
            >>> g.latest_metrics()
            {'loss': 0.5, 'encoder.hidden': 4.0}
        """
        return {name: values[-1] for name, values in tree_histories(self).items()}

    def reset_trend(self, *names: str) -> None:
        """Forget histories: of `names` (tags, groups, metrics, paths), or of the whole tree.

        Buffers and the epoch clock are kept. After lowering a learning rate, say,
        so that the next decision looks only at epochs trained at the new rate.

        Args:
            *names: what to forget; none for every history of the tree.

        Raises:
            KeyError: a path segment names no nested graph.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Identity()).build()
            >>> g.record("loss", 1.0); _ = g.flush()
            >>> g.reset_trend("loss"); len(g.trend("loss")), g.flush_count
            (0, 1)
        """
        if not names:
            for _, node in walk(self):
                store = values_of(node)
                if store is not None:
                    store.reset()
            return
        for _, owner, local in resolve_names(self, names, "g.reset_trend()", known=False):
            store = values_of(owner)
            if store is not None:
                store.reset([local])


def trend_of(graph: GraphCore, tag: str) -> Trend:
    """The history of a tag or metric of `graph` (any graph of the tree) as a `Trend`.

    Raises:
        PathError: no tag and no metric of that name.
        ValueError: a dotted path or a tag group.
    """
    check_local_name(tag, "g.trend()", "g.trend_at")
    if tag in graph._record.groups:
        raise ValueError(f"g.trend({tag!r}): a tag group has several trends; use g.trends")
    store = values_of(graph)
    if tag not in graph._record.tags and (store is None or not store.knows(tag)):
        raise PathError(
            f"g.trend(): no tag or metric {tag!r} in {graph.short_description()}",
            path=tag,
            exists=describe_level(graph, internal=True),
            fix="record or collect it first; nested graphs are reached with g.trend_at",
        )
    return Trend(store.history(tag) if store is not None else ())
