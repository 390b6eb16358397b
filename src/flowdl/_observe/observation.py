"""Observation, a feature of `fl.Graph`: turning tagged values into training decisions.

``collect`` and ``record`` buffer one number per call and tag; ``flush`` ends the
epoch, turning each buffer into one history point; the trends feature
(`flowdl._observe.trends`) answers questions about a history; the wall clock and
the exports are in `flowdl._observe.progress`. Nothing runs during a forward: a
graph nobody observes pays for its tags one reference each, and the core's one
attribute check per forward notes the time of the first call.
"""

from __future__ import annotations

import sys
from typing import Any, ClassVar

from torch import Tensor
from torch.utils.hooks import RemovableHandle

from flowdl._executor.core import GraphCore
from flowdl._log import logger
from flowdl._observe.lookup import children_labels, expand_tags, not_a_tag, show_value
from flowdl._observe.progress import Progress
from flowdl._observe.reduce import Reduction, check_reduction, reduce_tagged, scalar_of
from flowdl._observe.state import (
    OBSERVATION,
    FlushHook,
    LogHook,
    add_hook,
    begin_clock,
    observation_of,
    observation_state,
    values_of,
)
from flowdl._observe.tree_metrics import flush_tree
from flowdl._tree.paths import PathKind, check_local_name, resolve

__all__ = ["Observation", "collect_tags", "record_into"]


class Observation(Progress):
    """Collecting, recording, logging and flushing; the clock and exports from `Progress`.

    The observation state of a graph (stores, clock, hooks) is created on first use
    and is not part of the model: copies and pickles start without it.
    """

    _transient: ClassVar[tuple[str, ...]] = (OBSERVATION,)

    def collect(self, *tags: str, reduce: Reduction = "mean") -> None:
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
        collect_tags(self, expand_tags(self, tags, "g.collect()", "g.collect_at"), reduce, "")

    def collect_at(self, *paths: str, reduce: Reduction = "mean") -> None:
        """`collect` for tags anywhere in the tree: ``g.collect_at("encoder.hidden")``.

        The values are buffered in the graph that holds the tag.

        Args:
            *paths: tags or dotted paths to tags of nested graphs.
            reduce: as for `collect`.

        Raises:
            TypeError: no path given, or a value is not a tensor or a number.
            KeyError: a path names nothing, or names a nested graph or a metric.
            ValueError: an unknown reduction, or an empty tensor.

        Example:
            >>> import torch, flowdl as fl
            >>> encoder = fl.Flow(torch.nn.Identity()).tag("hidden").label("encoder").build()
            >>> g = fl.Flow(encoder).through(torch.tanh).build()
            >>> _ = g(torch.tensor([1.0, 3.0]))
            >>> g.collect_at("encoder.hidden"); encoder.collected("hidden")
            [2.0]
        """
        if not paths:
            raise TypeError("g.collect_at() needs at least one path, e.g. 'encoder.hidden'")
        check_reduction(reduce, "g.collect_at()")
        for path in paths:
            target = resolve(self, path, "g.collect_at()", prefer_names=True)
            if not target.members:
                raise not_a_tag(target, path, "g.collect_at()")
            collect_tags(target.graph, list(target.members), reduce, path)

    def collected(self, tag: str) -> list[float]:
        """The values buffered for `tag` this epoch, as floats (reads the device).

        Args:
            tag: a tag or metric of this graph.

        Returns:
            the buffered values, oldest first; empty when none.

        Example:
            >>> import flowdl, torch
            >>> g = flowdl.Flow(torch.nn.Identity()).build()
            >>> g.record("loss", 0.5, 0.25); g.collected("loss")
            [0.5, 0.25]
        """
        store = values_of(self)
        return store.buffered(tag) if store is not None else []

    def record(self, tag: str, *values: float | Tensor) -> None:
        """Buffer numbers computed outside the graph (a loss, an accuracy) for this epoch.

        They join the same pipeline as collected tags: `flush` averages them, and
        `trend` reads their history. A tensor is copied (detached, on its device:
        no wait for the device) and kept until `flush`, so what counts is its value
        at the call, whatever happens to the tensor afterwards.

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
        record_into(self, tag, values, f"g.record({tag!r})")

    def record_at(self, path: str, *values: float | Tensor) -> None:
        """`record` into a graph of the tree: ``g.record_at("encoder.aux_loss", aux)``.

        Args:
            path: a dotted path whose last segment is the metric's name.
            *values: as for `record`.

        Raises:
            TypeError: no values, or a value is neither a number nor a tensor.
            KeyError: a segment before the last names no nested graph.
            ValueError: a tensor with several elements, or the last segment is a
                tag group or a nested graph.

        Example:
            >>> import torch, flowdl as fl
            >>> encoder = fl.Flow(torch.nn.Identity()).label("encoder").build()
            >>> g = fl.Flow(encoder).build()
            >>> g.record_at("encoder.aux_loss", 0.5, 1.5); g.flush()
            {'encoder.aux_loss': 1.0}
        """
        target = resolve(self, path, "g.record_at()", new_name=True, prefer_names=True)
        if target.kind is PathKind.SUBGRAPH or target.kind is PathKind.TAG_GROUP:
            raise not_a_tag(target, path, "g.record_at()")
        record_into(target.graph, target.name, values, f"g.record_at({path!r})")

    # --------------------------------------------------------------- logging

    def log(self, *tags: str) -> None:
        """Show the current value of tags (default: all with a value): print, or the hooks.

        With hooks (`on_log`), calls each in registration order with
        ``{tag: value}``. Without, prints one line to stderr (and logs it at INFO
        on the ``flowdl.observe`` logger), ``tag: value`` joined
        by ``" | "``, tags sorted; a tensor with several elements shows its mean and
        shape. Nothing happens when none of the tags has a value.

        Args:
            *tags: tags of this graph; none for every tag with a value.

        Raises:
            KeyError: a tag does not exist.

        Example:
            >>> import torch, flowdl as fl
            >>> g = fl.Flow(torch.nn.Identity()).tag("x").through(torch.sum).tag("total").build()
            >>> _ = g(torch.tensor([1.0, 2.0]))
            >>> handle = g.on_log(print); g.log("total")
            {'total': tensor(3.)}
            >>> handle.remove()   # g.log() now prints "total: 3.0000 | x: 1.5000 (mean of [2])"
        """
        names = expand_tags(self, tags, "g.log()", "g.tagged_at") if tags else self.tags
        values = {tag: self.tagged(tag) for tag in names}
        values = {tag: v for tag, v in values.items() if v is not None}
        if not values:
            return
        observation = observation_of(self)
        if observation is not None and observation.log_hooks:
            for hook in list(observation.log_hooks.values()):
                hook(values)
            return
        line = " | ".join(f"{tag}: {show_value(values[tag])}" for tag in sorted(values))
        print(line, file=sys.stderr)
        logger("observe").info("%s", line)

    def on_log(self, hook: LogHook | None) -> RemovableHandle:
        """Send `log` to ``hook({tag: value})`` instead of stderr.

        Hooks compose like ``register_forward_hook``: each call adds one, they run
        in registration order, and removing one leaves the others. Printing to
        stderr resumes when none is left. ``None`` removes every `on_log` hook.

        Returns:
            a handle whose ``remove()`` unregisters this hook.

        Raises:
            TypeError: `hook` is neither callable nor ``None``.

        Example:
            >>> import flowdl as fl, torch
            >>> g = fl.Flow(torch.nn.Identity()).tag("x").build()
            >>> _ = g(torch.tensor([2.0]))
            >>> first = g.on_log(lambda values: print("first", sorted(values)))
            >>> second = g.on_log(lambda values: print("second", sorted(values)))
            >>> g.log()
            first ['x']
            second ['x']
            >>> first.remove(); g.log()
            second ['x']
        """
        return add_hook(observation_state(self).log_hooks, hook, "g.on_log()", "{tag: value}")

    def on_flush(self, hook: FlushHook | None) -> RemovableHandle:
        """Call ``hook({name: mean})`` after each `flush` that produced data here.

        The hook sees this graph's new means and those of its nested graphs, with
        the names `latest_metrics` uses. Hooks compose like
        ``register_forward_hook``: each call adds one, they run in registration
        order, and removing one leaves the others. ``None`` removes every
        `on_flush` hook.

        Returns:
            a handle whose ``remove()`` unregisters this hook.

        Raises:
            TypeError: `hook` is neither callable nor ``None``.

        Example:
            >>> import flowdl as fl, torch
            >>> g = fl.Flow(torch.nn.Identity()).build()
            >>> board = g.on_flush(lambda means: print("to the board:", means))
            >>> log = g.on_flush(lambda means: print("epoch done:", means))
            >>> g.record("loss", 2.0, 4.0); _ = g.flush()
            to the board: {'loss': 3.0}
            epoch done: {'loss': 3.0}
            >>> board.remove()
            >>> g.record("loss", 1.0); _ = g.flush()
            epoch done: {'loss': 1.0}
        """
        return add_hook(observation_state(self).flush_hooks, hook, "g.on_flush()", "{name: mean}")

    def tagged_at(self, path: str) -> Any:
        """`tagged` anywhere in the tree: the value of ``"encoder.hidden"`` in the last call.

        ``None`` when that graph has not run yet.

        Args:
            path: a tag, or a dotted path to a tag of a nested graph.

        Returns:
            the value, or ``None``.

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
        target = resolve(self, path, "g.tagged_at()", prefer_names=True)
        if target.kind is not PathKind.TAG:
            raise not_a_tag(target, path, "g.tagged_at()")
        return target.graph.tagged(target.name)

    # ----------------------------------------------------------------- flush

    def flush(self, *names: str, all_ranks: bool = True) -> dict[str, float]:
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


def collect_tags(graph: GraphCore, tags: list[str], reduce: Reduction, path: str) -> None:
    """Reduce every tag's value first, then buffer them in `graph`: all or nothing."""
    reduced = []
    for tag in tags:
        value = graph.tagged(tag)
        if value is not None:
            where = f"g.collect_at({path!r})" if path else f"g.collect({tag!r})"
            reduced.append((tag, reduce_tagged(value, reduce, where)))
    if reduced:
        store = begin_clock(graph).store
        for tag, buffered in reduced:
            store.add(tag, buffered)


def record_into(graph: GraphCore, tag: str, values: tuple[Any, ...], where: str) -> None:
    """Buffer `values` under `tag` in `graph`, after checking the name and the values."""
    if not values:
        raise TypeError(f"{where} needs at least one value, e.g. g.record('loss', 0.5)")
    if tag in graph._record.groups:
        raise ValueError(
            f"{where}: {tag!r} is a tag group of this graph; record under another name"
        )
    if tag not in graph._record.tags and tag in children_labels(graph):
        raise ValueError(
            f"{where}: {tag!r} is the label of a graph nested in this one; record "
            "under another name"
        )
    buffered = [scalar_of(v, where) for v in values]
    store = begin_clock(graph).store
    for value in buffered:
        store.add(tag, value)
