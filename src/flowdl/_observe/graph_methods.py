"""`ObservationMixin`: the graph methods that turn tagged values into training decisions.

``collect`` and ``record`` buffer one number per call and tag; ``flush`` ends the
epoch, turning each buffer into one history point; ``trend`` answers questions
about a history. Nothing runs during a forward: a graph nobody observes pays for
its tags one reference each, as before, and one attribute check per forward
starts the wall clock at the first call.
"""

# Methods take `self: Graph` (the class they are mixed into); mypy calls that "misc".
# mypy: disable-error-code="misc"

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import Tensor

from flowdl._describe import describe_value
from flowdl._format import format_metric
from flowdl._observe.export import csv_text, log_text, write_atomic
from flowdl._observe.reduce import Reduction, check_reduction, reduce_tagged, scalar_of
from flowdl._observe.state import FlushHook, LogHook, Observation
from flowdl._observe.store import MetricStore, select_series
from flowdl._observe.tree import flush_tree, resolve_names, tree_groups, tree_histories
from flowdl._observe.trend import Trend, TrendGroup
from flowdl._tree.children import walk
from flowdl._tree.paths import PathError, PathKind, check_local_name, describe_level, resolve

if TYPE_CHECKING:
    from flowdl._executor.graph import Graph

__all__ = ["ObservationMixin"]


class ObservationMixin:
    """Collecting, recording, flushing, trends, the wall clock, logs and exports."""

    _clock_start: float | None = None
    """`time.monotonic()` of the first forward; set by `Graph.forward`."""

    # ------------------------------------------------------------- the state

    def _start_clock(self) -> None:
        self.__dict__["_clock_start"] = time.monotonic()

    def _observation_state(self, now: float | None = None) -> Observation:
        """This graph's observation state, created on first use; starts the clock."""
        observation: Observation | None = self.__dict__.get("_observation")
        if observation is None:
            observation = Observation()
            self.__dict__["_observation"] = observation
        if observation.clock.start is None:
            if self._clock_start is None:
                self.__dict__["_clock_start"] = time.monotonic() if now is None else now
            observation.clock.start = self._clock_start
        return observation

    def _metric_store(self) -> MetricStore:
        """The store of this graph's metrics, created on first use."""
        return self._observation_state().store

    def _existing_store(self) -> MetricStore | None:
        """The store of this graph's metrics, or ``None`` if nothing was ever observed."""
        observation: Observation | None = self.__dict__.get("_observation")
        return observation.store if observation is not None else None

    # --------------------------------------------------------------- buffers

    def collect(self: Graph, *tags: str, reduce: Reduction = "mean") -> None:
        """Buffer the current value of each tag for this epoch, reduced to one number.

        A tensor is reduced over all its elements by `reduce` on its own device,
        and kept there until `flush`: collecting costs a few small kernels and no
        wait for the device. A tag group stands for its members. A tag without a
        value (before the first forward, or not reached by a failed one) is skipped.

        Args:
            *tags: tags or tag groups of this graph (for nested graphs, `collect_at`).
            reduce: ``"mean"`` (the default), ``"sum"``, ``"max"``, ``"min"``,
                ``"norm"`` (the 2-norm of all elements), or a callable taking the
                detached tensor and returning a number or a one-element tensor.
                Integer and boolean tensors are reduced in float64.

        Raises:
            TypeError: no tag given, or a tagged value is not a tensor or a number.
            KeyError: a tag does not exist (the message lists those that do).
            ValueError: an unknown reduction, a dotted path, or an empty tensor.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Identity()).tag("x").build()
            >>> _ = g(torch.tensor([1.0, 2.0, 6.0]))
            >>> g.collect("x"); g.collect("x", reduce="max")
            >>> g.collected("x")
            [3.0, 6.0]
        """
        if not tags:
            raise TypeError("g.collect() needs at least one tag, e.g. g.collect('loss')")
        check_reduction(reduce, "g.collect()")
        for tag in _expand_tags(self, tags, "g.collect()", "g.collect_at"):
            self._collect_one(tag, reduce, f"g.collect({tag!r})")

    def _collect_one(self: Graph, tag: str, reduce: Reduction, where: str) -> None:
        value = self.tagged(tag)
        if value is None:
            return
        buffered = reduce_tagged(value, reduce, where)
        self._observation_state().store.add(tag, buffered)

    def collect_at(self: Graph, *paths: str, reduce: Reduction = "mean") -> None:
        """`collect` for tags anywhere in the tree: ``g.collect_at("encoder.hidden")``.

        The values are buffered in the graph that holds the tag.

        Raises:
            TypeError: no path given, or a value is not a tensor or a number.
            KeyError: a path names nothing, or names a nested graph or a metric.
            ValueError: an unknown reduction, or an empty tensor.
        """
        if not paths:
            raise TypeError("g.collect_at() needs at least one path, e.g. 'encoder.hidden'")
        check_reduction(reduce, "g.collect_at()")
        for path in paths:
            target = resolve(self, path, "g.collect_at()")
            if not target.members:
                raise _not_a_tag(target, path, "g.collect_at()")
            for tag in target.members:
                target.graph._collect_one(tag, reduce, f"g.collect_at({path!r})")

    def collected(self, tag: str) -> list[float]:
        """The values buffered for `tag` this epoch, as floats (reads the device).

        Example:
            >>> import flowdl, torch
            >>> g = flowdl.Flow(torch.nn.Identity()).build()
            >>> g.record("loss", 0.5, 0.25); g.collected("loss")
            [0.5, 0.25]
        """
        store = self._existing_store()
        return store.buffered(tag) if store is not None else []

    def record(self: Graph, tag: str, *values: float | Tensor) -> None:
        """Buffer numbers computed outside the graph (a loss, an accuracy) for this epoch.

        They join the same pipeline as collected tags: `flush` averages them, and
        `trend` reads their history. A tensor is detached and kept on its device
        until `flush` (no wait for the device).

        Args:
            tag: a name of this graph: a tag, or any new name without dots or spaces
                (``"loss"``, ``"val/acc"``); ``_``-prefixed names are internal (a
                parent graph does not see them).
            *values: floats, or one-element tensors such as a loss.

        Raises:
            TypeError: no values, or a value is neither a number nor a tensor.
            ValueError: a tensor with several elements, or a bad name (a dotted
                path: use `record_at`; a tag group's name).

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Linear(2, 1)).build()
            >>> loss = g(torch.ones(4, 2)).pow(2).mean()
            >>> g.record("loss", loss); g.record("lr", 0.01)
            >>> sorted(g.flush())
            ['loss', 'lr']
        """
        check_local_name(tag, "g.record()", "g.record_at")
        self._record_into(tag, values, f"g.record({tag!r})")

    def _record_into(self: Graph, tag: str, values: tuple[Any, ...], where: str) -> None:
        if not values:
            raise TypeError(f"{where} needs at least one value, e.g. g.record('loss', 0.5)")
        if tag in self._record.groups:
            raise ValueError(
                f"{where}: {tag!r} is a tag group of this graph; record under another name"
            )
        if tag in children_labels(self):
            raise ValueError(
                f"{where}: {tag!r} is the label of a graph nested in this one; record "
                "under another name"
            )
        buffered = [scalar_of(v, where) for v in values]
        store = self._observation_state().store
        for value in buffered:
            store.add(tag, value)

    def record_at(self: Graph, path: str, *values: float | Tensor) -> None:
        """`record` into a graph of the tree: ``g.record_at("encoder.aux_loss", aux)``.

        Raises:
            TypeError: no values, or a value is neither a number nor a tensor.
            KeyError: a segment before the last names no nested graph.
            ValueError: a tensor with several elements, or the last segment is a
                tag group or a nested graph.
        """
        target = resolve(self, path, "g.record_at()", new_name=True)
        if target.kind is PathKind.SUBGRAPH or target.kind is PathKind.TAG_GROUP:
            raise _not_a_tag(target, path, "g.record_at()")
        target.graph._record_into(target.name, values, f"g.record_at({path!r})")

    # --------------------------------------------------------------- logging

    def log(self: Graph, *tags: str) -> None:
        """Show the current value of tags (default: all with a value): print, or the hook.

        Without a hook (`on_log`), prints one line to stderr, ``tag: value`` joined
        by ``" | "``, tags sorted; a tensor with several elements shows its mean and
        shape. Nothing happens when none of the tags has a value.

        Raises:
            KeyError: a tag does not exist.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Identity()).tag("x").through(torch.sum).tag("total").build()
            >>> _ = g(torch.tensor([1.0, 2.0]))
            >>> g.on_log(print); g.log("total")
            {'total': tensor(3.)}
            >>> g.on_log(None)   # g.log() now prints "total: 3.0000 | x: 1.5000 (mean of [2])"
        """
        names = _expand_tags(self, tags, "g.log()", "g.tagged_at") if tags else self.tags
        values = {tag: self.tagged(tag) for tag in names}
        values = {tag: v for tag, v in values.items() if v is not None}
        if not values:
            return
        observation: Observation | None = self.__dict__.get("_observation")
        hook = observation.log_hook if observation is not None else None
        if hook is not None:
            hook(values)
            return
        line = " | ".join(f"{tag}: {_show(values[tag])}" for tag in sorted(values))
        print(line, file=sys.stderr)

    def on_log(self, hook: LogHook | None) -> None:
        """Send `log` to ``hook({tag: value})`` instead of stderr; ``None`` restores printing."""
        self._observation_state().log_hook = hook

    def on_flush(self, hook: FlushHook | None) -> None:
        """Call ``hook({name: mean})`` after each `flush` that produced data here.

        The hook sees this graph's new means and those of its nested graphs, with
        the names `latest_metrics` uses. ``None`` removes it.

        Example:
            >>> import flowdl as fl, torch
            >>> g = fl.Flow(torch.nn.Identity()).build()
            >>> g.on_flush(lambda means: print("epoch done:", means))
            >>> g.record("loss", 2.0, 4.0); _ = g.flush()
            epoch done: {'loss': 3.0}
        """
        self._observation_state().flush_hook = hook

    def tagged_at(self: Graph, path: str) -> Any:
        """`tagged` anywhere in the tree: the value of ``"encoder.hidden"`` in the last call.

        ``None`` when that graph has not run yet.

        Raises:
            KeyError: the path names nothing, or names a nested graph, a tag group
                or a metric.

        Example:
            >>> import torch, flowdl as fl
            >>> encoder = fl.Flow(torch.nn.Identity()).tag("hidden").label("encoder").build()
            >>> g = fl.Flow(encoder).through(lambda x: 2 * x).build()
            >>> g.tagged_at("encoder.hidden") is None
            True
            >>> _ = g(torch.tensor([1.0])); g.tagged_at("encoder.hidden")
            tensor([1.])
        """
        target = resolve(self, path, "g.tagged_at()")
        if target.kind is not PathKind.TAG:
            raise _not_a_tag(target, path, "g.tagged_at()")
        return target.graph.tagged(target.name)

    # ----------------------------------------------------------------- flush

    def flush(self: Graph, *names: str, all_ranks: bool = True) -> dict[str, float]:
        """End the epoch: each buffered mean becomes one point of its history.

        Without names, flushes everything buffered in this graph and in every
        graph nested in it (each graph once, however often it is nested); with
        names (tags, tag groups, metrics, or paths such as ``"encoder.hidden"``),
        only those, keeping the other buffers. Names without buffered values are
        skipped. A flush that produced data counts one epoch (`flush_count`,
        `eta`) for each graph of the tree it touched, and calls their `on_flush`
        hooks.

        Under an initialised `torch.distributed`, the means are averaged across
        ranks, so every rank holds the same history. That is a collective: every
        rank must call ``flush`` with the same names, and have buffered the same
        names (otherwise every rank raises an error saying what each had). With
        ``all_ranks=False`` a rank flushes alone, with its own means.

        Args:
            *names: what to flush (default: everything).
            all_ranks: average across the ranks of a distributed run.

        Returns:
            ``{name: mean}`` of what was flushed, named as in `latest_metrics`.

        Raises:
            KeyError: a path segment names no nested graph.
            RuntimeError: distributed ranks had different names to flush.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Identity()).build()
            >>> for epoch in ([2.0, 4.0, 6.0], [1.0, 2.0]):
            ...     for loss in epoch:
            ...         g.record("loss", loss)
            ...     means = g.flush()
            >>> means, g.trend("loss").values, g.flush_count
            ({'loss': 1.5}, (4.0, 1.5), 2)
        """
        return flush_tree(self, names, all_ranks)

    def reset_trend(self: Graph, *names: str) -> None:
        """Forget histories: of `names` (tags, groups, metrics, paths), or of the whole tree.

        Buffers and the epoch clock are kept.

        Raises:
            KeyError: a path segment names no nested graph.
        """
        if not names:
            for _, node in walk(self):
                store = node._existing_store()
                if store is not None:
                    store.reset()
            return
        for _, owner, local in resolve_names(self, names, "g.reset_trend()", known=False):
            store = owner._existing_store()
            if store is not None:
                store.reset([local])

    # ---------------------------------------------------------------- trends

    def trend(self: Graph, tag: str) -> Trend:
        """The history of a tag or metric of this graph, one value per `flush`.

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
        check_local_name(tag, "g.trend()", "g.trend_at")
        if tag in self._record.groups:
            raise ValueError(f"g.trend({tag!r}): a tag group has several trends; use g.trends")
        store = self._existing_store()
        if tag not in self._record.tags and (store is None or not store.knows(tag)):
            raise PathError(
                f"g.trend(): no tag or metric {tag!r} in {self.short_description()}",
                path=tag,
                exists=describe_level(self, internal=True),
                fix="record or collect it first; nested graphs are reached with g.trend_at",
            )
        return Trend(store.history(tag) if store is not None else ())

    def trend_at(self: Graph, path: str) -> Trend:
        """`trend` anywhere in the tree: ``g.trend_at("encoder.hidden")``.

        Raises:
            KeyError: the path names nothing, a nested graph or a tag group.
        """
        target = resolve(self, path, "g.trend_at()")
        if target.kind not in (PathKind.TAG, PathKind.METRIC):
            raise _not_a_tag(target, path, "g.trend_at()")
        return target.graph.trend(target.name)

    def trends(self: Graph, *names: str) -> TrendGroup:
        """Several trends at once: tags, metrics, tag groups (their members), paths.

        Without names: every metric with a history in the tree, sorted by name.

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
        return TrendGroup({dotted: owner.trend(local) for dotted, owner, local in resolved})

    def latest_metrics(self: Graph) -> dict[str, float]:
        """The newest history value of every metric of the tree, with dotted names.

        This graph's own names as they are, nested graphs' as paths
        (``"encoder.hidden"``); nested graphs' ``_``-prefixed names are left out.

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

    # ------------------------------------------------------------ wall clock

    @property
    def flush_count(self) -> int:
        """How many flushes produced data in this graph's tree (epochs done)."""
        observation: Observation | None = self.__dict__.get("_observation")
        return observation.clock.count if observation is not None else 0

    @property
    def elapsed(self) -> float:
        """Seconds since training started (the first forward); 0.0 before it."""
        start = self._clock_start
        return 0.0 if start is None else time.monotonic() - start

    def eta(self, total_epochs: int) -> float:
        """Seconds left to reach `total_epochs` flushes, from the mean epoch so far.

        ``(time of the last flush - start) / flush_count × (total_epochs -
        flush_count)``; 0.0 before the first flush and once `total_epochs` are done.
        `flowdl._format.format_duration` writes it for people.

        Raises:
            ValueError: `total_epochs` is not a positive int.
        """
        if isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < 1:
            raise ValueError(f"g.eta(total_epochs={total_epochs!r}): expected an int >= 1")
        observation: Observation | None = self.__dict__.get("_observation")
        return observation.clock.eta(total_epochs) if observation is not None else 0.0

    # --------------------------------------------------------------- exports

    def _series(self: Graph, names: tuple[str, ...], what: str) -> list[tuple[str, list[float]]]:
        """The series of `names` (default: all, sorted) for plots and exports."""
        return select_series(tree_histories(self), tree_groups(self), names, what=what)

    def export_trends(self: Graph, path: str | os.PathLike[str], *names: str) -> Path:
        """Write histories as CSV: ``epoch,<name>,...``, one row per epoch (1-based).

        Names as in `latest_metrics` (default: every metric with a history, sorted);
        tag groups are expanded; names without a history are skipped. Values are
        written ``%.8g``; a shorter history leaves empty cells. The file is written
        whole or not at all.

        Returns:
            the path written.

        Raises:
            ValueError: no history to export (call `flush` first).

        Example:
            >>> import tempfile, pathlib, torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Identity()).build()
            >>> for loss in (0.5, 0.25):
            ...     g.record("loss", loss); _ = g.flush()
            >>> out = g.export_trends(pathlib.Path(tempfile.mkdtemp()) / "trends.csv")
            >>> print(out.read_text(), end="")
            epoch,loss
            1,0.5
            2,0.25
        """
        return write_atomic(path, csv_text(self._series(names, "export")))

    def write_log(
        self: Graph, path: str | os.PathLike[str], total_epochs: int = 0, *names: str
    ) -> Path:
        """Write the training log: a header, then one line per epoch with its metrics,
        its duration and the time left.

        ``epoch   3  loss=0.1234  acc=0.9000  [1.2s  ETA 8.4s]``: values written by
        `flowdl._format.format_metric`, durations by `format_duration`; the ETA
        appears when `total_epochs` > 0. Names as for `export_trends`.

        Returns:
            the path written.

        Raises:
            ValueError: no history to log (call `flush` first), or a negative
                `total_epochs`.
        """
        if isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < 0:
            raise ValueError(
                f"g.write_log(path, total_epochs={total_epochs!r}): expected an int >= 0 "
                "(0: no ETA)"
            )
        series = self._series(names, "log")
        clock = self._observation_state().clock
        return write_atomic(path, log_text(series, clock, total_epochs))


def children_labels(graph: Graph) -> set[str]:
    """Labels of the graphs nested directly in `graph`."""
    from flowdl._tree.children import children

    return set(children(graph))


def _expand_tags(graph: Graph, tags: tuple[str, ...], call: str, at: str) -> list[str]:
    """Tags of `graph`, tag groups replaced by their members; unknown tags raise."""
    out: list[str] = []
    for tag in tags:
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


def _not_a_tag(target: Any, path: str, call: str) -> PathError:
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


def _show(value: Any) -> str:
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
