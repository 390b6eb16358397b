"""Observation over the graph tree: dotted metric names, histories, and the recursive flush.

Names are relative to the graph asked: its own names as they are (``loss``,
``_aux``), a nested graph's as paths (``encoder.hidden``). A nested graph's
``_``-prefixed names are internal: flushed with the rest, but not shown to its
parents.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from flowdl._executor.core import GraphCore
from flowdl._observe.distributed import average_across_ranks
from flowdl._observe.state import begin_clock, values_of
from flowdl._observe.store import MetricStore
from flowdl._tree.children import walk
from flowdl._tree.paths import PathError, PathKind, describe_level, resolve

__all__ = [
    "StoreOf",
    "flush_stores",
    "flush_tree",
    "resolve_names",
    "tree_groups",
    "tree_histories",
    "visible",
]

StoreOf = Callable[[GraphCore], MetricStore | None]
"""Which store of a graph a tree operation reads: its values' (`values_of`) or its timings'."""


def visible(relative: str) -> bool:
    """Whether a name relative to a graph is shown to it: not a nested graph's internal name.

    Example:
        >>> visible("loss"), visible("_aux"), visible("encoder.hidden"), visible("encoder._aux")
        (True, True, True, False)
    """
    head, _, last = relative.rpartition(".")
    return not (head and last.startswith("_"))


def tree_histories(graph: GraphCore, store_of: StoreOf = values_of) -> dict[str, list[float]]:
    """``{dotted name: history}`` of every non-empty history in the tree, as `graph` sees it.

    Args:
        store_of: which store of each graph to read (default: the values').
    """
    out: dict[str, list[float]] = {}
    for prefix, node in walk(graph):
        store = store_of(node)
        if store is None:
            continue
        for name, values in store.histories().items():
            if visible(prefix + name):
                out[prefix + name] = values
    return out


def tree_groups(graph: GraphCore) -> dict[str, list[str]]:
    """``{dotted group: [dotted members]}`` for every tag group of the tree."""
    return {
        prefix + group: [prefix + m for m in members]
        for prefix, node in walk(graph)
        for group, members in node._record.groups.items()
    }


def resolve_names(
    graph: GraphCore, names: Sequence[str], call: str, *, known: bool
) -> list[tuple[str, GraphCore, str]]:
    """``(dotted name, owning graph, local name)`` for each name, groups expanded.

    Args:
        known: every name must be a tag or a metric seen before (else any last
            segment is accepted, and means "nothing buffered").

    Raises:
        PathError: a segment names nothing, a name is a nested graph, or (with
            `known`) a last segment names nothing.
    """
    out: list[tuple[str, GraphCore, str]] = []
    for name in names:
        target = resolve(graph, name, call, new_name=not known, prefer_names=True)
        if target.kind is PathKind.SUBGRAPH:
            raise PathError(
                f"{call}: {name!r} is a nested graph, not a metric",
                path=name,
                exists=describe_level(target.graph, internal=not target.prefix),
                fix=f"name its metrics, e.g. '{name}.loss'; {call[:-1]}) with no names "
                "covers the whole tree",
            )
        locals_ = target.members or (target.name,)
        out.extend((target.prefix + local, target.graph, local) for local in locals_)
    return out


def flush_stores(
    entries: Sequence[tuple[str, GraphCore]],
    chosen: Sequence[tuple[GraphCore, str]] | None,
    all_ranks: bool,
    call: str,
    store_of: StoreOf,
) -> dict[str, float]:
    """Buffered means become history points, in each graph's store chosen by `store_of`.

    Args:
        entries: the tree, as `walk` lists it.
        chosen: ``(owning graph, local name)`` to flush; ``None``: everything buffered.
        all_ranks: average each mean across the ranks of `torch.distributed`.
        call: the method, for messages.
        store_of: which store of each graph.

    Returns:
        ``{dotted name: mean}`` of what was flushed (internal names included).
    """
    wanted_by: dict[int, list[str]] | None = None
    if chosen is not None:
        wanted_by = {}
        for owner, local in chosen:
            wanted_by.setdefault(id(owner), []).append(local)
    local_means: dict[str, float] = {}
    owners: dict[str, tuple[MetricStore, str]] = {}
    for prefix, node in entries:
        store = store_of(node)
        wanted = None if wanted_by is None else wanted_by.get(id(node))
        if store is None or (wanted_by is not None and wanted is None):
            continue
        for name, mean in store.means(wanted).items():
            local_means[prefix + name] = mean
            owners[prefix + name] = (store, name)
    means = average_across_ranks(local_means, call) if all_ranks else local_means
    for dotted, mean in means.items():
        store, name = owners[dotted]
        store.append({name: mean})
        store.discard([name])
    return means


def flush_tree(
    graph: GraphCore, names: Sequence[str], all_ranks: bool, call: str = "g.flush()"
) -> dict[str, float]:
    """End the epoch for `names` (default: everything buffered in the tree).

    Each buffered name's mean (averaged across ranks when `all_ranks` and
    `torch.distributed` is initialised) is appended to its history. Every graph
    of the tree with new data in its part of the tree counts an epoch and calls
    its flush hook with the new means, named as it sees them.

    Returns:
        ``{dotted name: mean}`` as `graph` sees them.
    """
    chosen = None
    if names:
        chosen = [
            (owner, local) for _, owner, local in resolve_names(graph, names, call, known=False)
        ]
    entries = walk(graph)
    means = flush_stores(entries, chosen, all_ranks, call, values_of)
    if not means:
        return {}
    now = time.monotonic()
    for prefix, node in entries:
        produced = {d[len(prefix) :]: m for d, m in means.items() if d.startswith(prefix)}
        if not produced:
            continue
        observation = begin_clock(node, now)
        observation.clock.epoch_ended(now)
        shown = {name: m for name, m in produced.items() if visible(name)}
        if observation.flush_hooks and shown:
            for hook in list(observation.flush_hooks.values()):
                hook(shown)
    return {d: m for d, m in means.items() if visible(d)}
