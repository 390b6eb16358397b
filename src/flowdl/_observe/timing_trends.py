"""`TimingTrends`: node durations from profiles, one mean per epoch, as trends (goDl §5).

The value pipeline's twin, in seconds: ``collect_timings`` buffers the durations of
tagged nodes from the last profile (`Graph.profile`), ``flush_timings`` turns each
buffer into one history point, ``timing_trend`` and ``timing_trends`` ask the
histories the questions `fl.Trend` answers. The buffers and histories are a second
`MetricStore` of each graph (``Observation.timings``), so values and timings never
mix, and a flush of one leaves the other alone.

Like ``flush``, these methods cover the graph tree: names are tags, tag groups or
dotted paths (``"encoder.hidden"``), and without names they cover this graph and
every labelled graph nested in it. Profiling is per graph, so a nested graph's
nodes are timed only when profiling is on for it (``g.subgraph("encoder")
.enable_profiling()``); otherwise it is one node of its parent.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from flowdl._errors import render_message
from flowdl._executor.core import GraphCore
from flowdl._files import write_text_atomic
from flowdl._observe.export import csv_text
from flowdl._observe.state import observation_state, timings_of
from flowdl._observe.store import select_series
from flowdl._observe.tree_metrics import flush_stores, tree_groups, tree_histories, visible
from flowdl._observe.trend import Trend
from flowdl._observe.trend_group import TrendGroup
from flowdl._profile.profile import Profile
from flowdl._profile.profiling import Profiling, is_profiling, profile_of
from flowdl._tree.children import walk
from flowdl._tree.paths import PathError, PathKind, Target, describe_level, resolve
from flowdl._web.curves import write_curves_page

__all__ = ["TimingTrends"]

_NO_DATA_HINT = "call g.collect_timings() after profiled forwards and g.flush_timings() first"


class TimingTrends(Profiling):
    """`collect_timings`, `flush_timings`, `timing_trend(s)`, `reset_timing_trend`, exports.

    A feature of `fl.Graph`, built on profiling; the timing buffers and histories
    live in the observation state of each graph, beside (never mixed with) its values.
    """

    def collect_timings(self, *tags: str) -> None:
        """Buffer, for this epoch, how long tagged nodes took in the last profiled forward.

        Without tags: every tagged node of the last profile of this graph and of
        each graph nested in it that has one (a node with two tags counts under
        both). With tags (tags, tag groups, dotted paths): those nodes only. Each
        profile counts once per tag: collecting again before the next profiled
        forward adds nothing, so a nested graph that did not run in the last call
        (a switch branch not taken) is not counted twice. Graph inputs take no time
        and are not collected. Durations are in seconds.

        Args:
            *tags: what to collect (default: every tagged node with a profile).

        Raises:
            RuntimeError: no profile to collect from: profiling is off, or no
                forward ran since it was enabled (for a tag of a nested graph: on
                that graph). The message says where to enable it.
            KeyError: a path names nothing, a nested graph or a metric.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Linear(2, 2)).tag("hidden").through(torch.nn.ReLU()).build()
            >>> g.enable_profiling()
            >>> for step in range(3):
            ...     _ = g(torch.randn(4, 2)); g.collect_timings()
            >>> means = g.flush_timings()
            >>> list(means), means["hidden"] > 0
            (['hidden'], True)
        """
        found: dict[int, tuple[GraphCore, Profile, set[str] | None]] = {}
        if not tags:
            for _, node in walk(self):
                profile = profile_of(node)
                if profile is not None:
                    found[id(node)] = (node, profile, None)
            if not found:
                raise _no_profile(self, self, "", "g.collect_timings()")
        for name, owner, local in _timing_targets(self, tags, "g.collect_timings()"):
            profile = profile_of(owner)
            if profile is None:
                raise _no_profile(self, owner, name, "g.collect_timings()")
            wanted = found.setdefault(id(owner), (owner, profile, set()))[2]
            assert wanted is not None
            wanted.add(local)
        for owner, profile, wanted in found.values():  # every check passed: all or nothing
            _take_timings(owner, profile, wanted)

    def flush_timings(self, *tags: str, all_ranks: bool = True) -> dict[str, float]:
        """End the epoch for timings: each buffered mean duration becomes a history point.

        Without tags, flushes every timing buffered in this graph's tree; with
        tags (tags, tag groups, paths), only those, keeping the others. Value
        buffers (`flush`) are not touched, no epoch is counted (`flush_count`
        follows `flush`) and no `on_flush` hook is called. Under an initialised
        `torch.distributed` the means are averaged across ranks, as `flush` does
        (a collective: every rank calls it with the same names buffered);
        ``all_ranks=False`` flushes this rank's own means.

        Args:
            *tags: what to flush (default: everything buffered).
            all_ranks: average across the ranks of a distributed run.

        Returns:
            ``{name: mean seconds}`` of what was flushed, names as in `latest_metrics`.

        Raises:
            KeyError: a path names nothing, a nested graph or a metric.
            RuntimeError: distributed ranks had different timings to flush.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Linear(2, 2)).tag("hidden").build()
            >>> g.flush_timings()     # nothing collected: nothing to flush
            {}
        """
        chosen = None
        if tags:
            chosen = [
                (o, local) for _, o, local in _timing_targets(self, tags, "g.flush_timings()")
            ]
        means = flush_stores(walk(self), chosen, all_ranks, "g.flush_timings()", timings_of)
        return {name: mean for name, mean in means.items() if visible(name)}

    def timing_trend(self, tag: str) -> Trend:
        """The history of a node's mean duration in seconds, one value per `flush_timings`.

        Args:
            tag: a tag of this graph, or a path such as ``"encoder.hidden"``.

        Returns:
            an `fl.Trend` (empty before the first `flush_timings` of that tag).

        Raises:
            KeyError: the path names nothing, a nested graph or a metric.
            ValueError: a tag group (use `timing_trends`).

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Linear(8, 8)).tag("hidden").build()
            >>> g.enable_profiling()
            >>> for epoch in range(3):
            ...     _ = g(torch.randn(4, 8)); g.collect_timings("hidden"); _ = g.flush_timings()
            >>> trend = g.timing_trend("hidden")
            >>> len(trend), trend.min > 0
            (3, True)
        """
        target = resolve(self, tag, "g.timing_trend()", prefer_names=True)
        if target.kind is PathKind.TAG_GROUP:
            raise ValueError(
                f"g.timing_trend({tag!r}): a tag group has several trends; use "
                f"g.timing_trends({tag!r})"
            )
        (local,) = _tags_of(target, tag, "g.timing_trend()")
        store = timings_of(target.graph)
        return Trend(store.history(local) if store is not None else ())

    def timing_trends(self, *tags: str) -> TrendGroup:
        """Several timing trends at once; a tag group stands for its members.

        Without tags: every timing history of the tree, sorted by name.

        Args:
            *tags: tags, tag groups or dotted paths; none for every timing history.

        Returns:
            the timing trends (seconds per epoch), named, in the order asked.

        Raises:
            KeyError: a path names nothing, a nested graph or a metric.

        Example:
            >>> import torch, flowdl as fl
            >>> g = (fl.Flow(torch.nn.Linear(2, 4)).split(torch.nn.Linear(4, 4), torch.nn.Tanh())
            ...        .tag_group("head").merge(fl.Add()).build())
            >>> g.enable_profiling()
            >>> _ = g(torch.randn(3, 2)); g.collect_timings("head"); _ = g.flush_timings()
            >>> g.timing_trends("head").names
            ('head_0', 'head_1')
        """
        if not tags:
            histories = tree_histories(self, timings_of)
            return TrendGroup({name: Trend(histories[name]) for name in sorted(histories)})
        trends: dict[str, Trend] = {}
        for name, owner, local in _timing_targets(self, tags, "g.timing_trends()"):
            store = timings_of(owner)
            trends[name] = Trend(store.history(local) if store is not None else ())
        return TrendGroup(trends)

    def reset_timing_trend(self, *tags: str) -> None:
        """Forget timing histories: of `tags` (tags, groups, paths), or of the whole tree.

        Timing buffers are kept, and value histories are not touched (`reset_trend`).

        Args:
            *tags: what to forget; none for every timing history of the tree.

        Raises:
            KeyError: a path names nothing, a nested graph or a metric.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Linear(2, 2)).tag("hidden").build()
            >>> g.enable_profiling()
            >>> _ = g(torch.randn(1, 2)); g.collect_timings(); _ = g.flush_timings()
            >>> g.reset_timing_trend(); len(g.timing_trend("hidden"))
            0
        """
        if not tags:
            for _, node in walk(self):
                store = timings_of(node)
                if store is not None:
                    store.reset()
            return
        for _, owner, local in _timing_targets(self, tags, "g.reset_timing_trend()"):
            store = timings_of(owner)
            if store is not None:
                store.reset([local])

    # ------------------------------------------------------------- exports

    def _timing_series(self, names: Sequence[str], what: str) -> list[tuple[str, list[float]]]:
        """The timing series of `names` (default: all, sorted) for plots and exports."""
        return select_series(
            tree_histories(self, timings_of),
            tree_groups(self),
            names,
            what=what,
            data="timing data",
            hint=_NO_DATA_HINT,
        )

    def export_timing_trends(self, path: str | os.PathLike[str], *tags: str) -> Path:
        """Write timing histories as CSV, in seconds, as `export_trends` writes values.

        ``epoch,<name>,...``, one row per epoch (1-based), values ``%.8g``; names as
        in `timing_trends` (default: all, sorted), tag groups expanded, names
        without a history skipped. Written whole or not at all.

        Args:
            path: the CSV file to write.
            *tags: tags, tag groups or paths; none for every timing history.

        Returns:
            the path written.

        Raises:
            ValueError: no timing history to export (call `flush_timings` first).

        Example:
            >>> import tempfile, pathlib, torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Linear(2, 2)).tag("hidden").build()
            >>> g.enable_profiling()
            >>> for epoch in range(2):
            ...     _ = g(torch.randn(1, 2)); g.collect_timings(); _ = g.flush_timings()
            >>> out = g.export_timing_trends(pathlib.Path(tempfile.mkdtemp()) / "timings.csv")
            >>> [line.split(",")[0] for line in out.read_text().splitlines()]
            ['epoch', '1', '2']
        """
        return write_text_atomic(path, csv_text(self._timing_series(tags, "export")))

    def plot_timings_html(self, path: str | os.PathLike[str], *tags: str) -> Path:
        """Write the "Timing Trends" page: each node's mean seconds per epoch, offline.

        The page of `plot_html`, drawn from the timing histories (`flush_timings`);
        names as in `timing_trends` (default: all, sorted), tag groups expanded.

        Args:
            path: the HTML file to write.
            *tags: as for `export_timing_trends`.

        Returns:
            the path written.

        Raises:
            ValueError: no timing history to plot (call `flush_timings` first).

        Example:
            >>> import tempfile, pathlib, torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Linear(2, 2)).tag("hidden").build()
            >>> g.enable_profiling()
            >>> _ = g(torch.randn(1, 2)); g.collect_timings(); _ = g.flush_timings()
            >>> page = g.plot_timings_html(pathlib.Path(tempfile.mkdtemp()) / "timings.html")
            >>> "<title>Timing Trends</title>" in page.read_text()
            True
        """
        series = dict(self._timing_series(tags, "plot"))
        return write_curves_page(path, series, "Timing Trends", y_title="seconds")


def _timing_targets(
    graph: GraphCore, names: Sequence[str], call: str
) -> list[tuple[str, GraphCore, str]]:
    """``(dotted name, owning graph, tag)`` for each name, tag groups expanded.

    Raises:
        PathError: a name names nothing, or a nested graph or a metric (timings
            belong to tagged nodes).
    """
    out: list[tuple[str, GraphCore, str]] = []
    for name in names:
        target = resolve(graph, name, call, prefer_names=True)
        out.extend((target.prefix + m, target.graph, m) for m in _tags_of(target, name, call))
    return out


def _tags_of(target: Target, name: str, call: str) -> tuple[str, ...]:
    """The tags `target` names (one, or a group's members).

    Raises:
        PathError: `target` is a nested graph or a metric.
    """
    if target.members:
        return target.members
    raise PathError(
        f"{call}: {target.name!r} is a {target.kind.value} of "
        f"{target.graph.short_description()}; timings belong to tagged nodes",
        path=name,
        exists=describe_level(target.graph, internal=not target.prefix),
        fix=f"name a tag inside it, e.g. '{name}.<tag>'"
        if target.kind is PathKind.SUBGRAPH
        else "name a tag or a tag group (tag the node with .tag(name) when building)",
    )


def _take_timings(graph: GraphCore, profile: Profile, wanted: set[str] | None) -> None:
    """Buffer the durations of `profile`'s tagged nodes not yet taken from it."""
    observation = observation_state(graph)
    if observation.timed_profile is not profile:
        observation.timed_profile = profile
        observation.timed_tags = set()
    taken = observation.timed_tags
    for node in profile.nodes:
        for tag in node.tags:
            if (wanted is None or tag in wanted) and tag not in taken:
                observation.timings.add(tag, node.seconds)
                taken.add(tag)


def _no_profile(root: GraphCore, owner: GraphCore, name: str, call: str) -> RuntimeError:
    """The error for collecting timings from a graph without a profile."""
    where = owner.short_description()
    if not name:
        where += " or of a graph nested in it"
    state = (
        "profiling is on, but no forward has run since it was enabled"
        if is_profiling(owner)
        else "profiling is off"
    )
    path = name.rpartition(".")[0]
    enable = "g.enable_profiling()" if owner is root else f"g.subgraph({path!r}).enable_profiling()"
    subject = f" for {name!r}" if name else ""
    return RuntimeError(
        render_message(
            f"{call}: no profile to collect timings from{subject}",
            [
                ("expected", f"a profiled forward of {where}"),
                ("received", state),
                (
                    "fix",
                    f"call {enable} before the forward; timings come from its profile "
                    "(a nested graph is profiled only when profiling is on for it)",
                ),
            ],
        )
    )
