"""A graph tree's observation history as data, for checkpoints: export, check, restore.

What a resumed run needs to answer as the stopped one did: every flushed history of
every graph in the tree (values and timings, the names ever seen), and the clock
(how many epochs ended, their durations, the time elapsed). Values buffered since the
last flush are not history and are not kept. Times are kept relative to the start, so
a run restored later continues from the elapsed time it had when it was saved (the
time between the save and the load does not count).
"""

from __future__ import annotations

import math
import time
from typing import Any

from flowdl._executor.core import GraphCore
from flowdl._observe.state import observation_of, observation_state
from flowdl._observe.store import MetricStore
from flowdl._tree.children import walk

__all__ = ["check_history", "export_history", "restore_history"]


def export_history(graph: GraphCore, now: float | None = None) -> dict[str, Any]:
    """The observation history of `graph` and every graph in its tree, as JSON-ready data.

    Returns:
        ``{prefix: {"values": ..., "timings": ..., "clock": ...}}`` for each graph
        that observed something (``""`` is `graph` itself); floats may be infinite or
        NaN (the caller encodes them).

    Example:
        >>> import torch, flowdl as fl
        >>> g = fl.Flow(torch.nn.Linear(2, 2)).tag("out").build()
        >>> g.record("loss", 0.5); _ = g.flush()
        >>> export_history(g)[""]["values"]["histories"]
        {'loss': [0.5]}
    """
    now = time.monotonic() if now is None else now
    out: dict[str, Any] = {}
    for prefix, node in walk(graph):
        state = observation_of(node)
        if state is None:
            continue
        clock = state.clock
        start = clock.start
        out[prefix] = {
            "values": _store(state.store),
            "timings": _store(state.timings),
            "clock": {
                "elapsed": None if start is None else now - start,
                "ends": [] if start is None else [end - start for end in clock.ends],
                "first_end_wall": clock.first_end_wall,
            },
        }
    return out


def _store(store: MetricStore) -> dict[str, Any]:
    return {"histories": store.histories(), "known": store.known_names()}


def check_history(data: Any, graph: GraphCore) -> dict[str, Any]:
    """`data` is what `export_history` gives, for graphs of `graph`'s tree.

    Returns:
        the part of `data` for graphs that `graph`'s tree has (others are left out).

    Raises:
        ValueError: `data` is not of that shape; the message says where.
    """
    if not isinstance(data, dict):
        raise ValueError("the observation history is not a dict")
    prefixes = {prefix for prefix, _ in walk(graph)}
    for prefix, entry in data.items():
        at = f"the observation history of {prefix or 'the graph'!r}"
        if not isinstance(entry, dict) or set(entry) != {"values", "timings", "clock"}:
            raise ValueError(f"{at} is not {{values, timings, clock}}")
        for part in ("values", "timings"):
            _check_store(entry[part], f"{at}: {part}")
        clock = entry["clock"]
        if not isinstance(clock, dict) or set(clock) != {"elapsed", "ends", "first_end_wall"}:
            raise ValueError(f"{at}: clock is not {{elapsed, ends, first_end_wall}}")
        if not (clock["elapsed"] is None or _finite(clock["elapsed"])):
            raise ValueError(f"{at}: clock.elapsed is not a number")
        if not (isinstance(clock["ends"], list) and all(_finite(e) for e in clock["ends"])):
            raise ValueError(f"{at}: clock.ends is not a list of numbers")
        if clock["ends"] and clock["elapsed"] is None:
            raise ValueError(f"{at}: the clock has epoch ends but no start")
        if not (clock["first_end_wall"] is None or _finite(clock["first_end_wall"])):
            raise ValueError(f"{at}: clock.first_end_wall is not a number")
    return {prefix: entry for prefix, entry in data.items() if prefix in prefixes}


def _check_store(value: Any, at: str) -> None:
    if not isinstance(value, dict) or set(value) != {"histories", "known"}:
        raise ValueError(f"{at} is not {{histories, known}}")
    histories, known = value["histories"], value["known"]
    if not (isinstance(known, list) and all(isinstance(name, str) for name in known)):
        raise ValueError(f"{at}: known is not a list of names")
    if not isinstance(histories, dict):
        raise ValueError(f"{at}: histories is not a dict")
    for name, values in histories.items():
        if not (isinstance(values, list) and all(_number(v) for v in values)):
            raise ValueError(f"{at}: the history of {name!r} is not a list of numbers")


def restore_history(graph: GraphCore, data: dict[str, Any], now: float | None = None) -> None:
    """Replace the observation history of `graph`'s tree by `data` (checked by `check_history`).

    Graphs of the tree that `data` does not name keep nothing: their histories are
    emptied and their clocks reset, as in a fresh graph.
    """
    now = time.monotonic() if now is None else now
    for prefix, node in walk(graph):
        entry = data.get(prefix)
        if entry is None:
            if observation_of(node) is not None:
                state = observation_state(node)
                state.store.reset()
                state.timings.reset()
                state.clock.start, state.clock.ends, state.clock.first_end_wall = None, [], None
            continue
        state = observation_state(node)
        for store, saved in ((state.store, entry["values"]), (state.timings, entry["timings"])):
            store.reset()
            for name in saved["known"]:
                store.remember(name)
            for name, values in saved["histories"].items():
                for value in values:
                    store.append({name: float(value)})
        clock = entry["clock"]
        elapsed = clock["elapsed"]
        state.clock.start = None if elapsed is None else now - float(elapsed)
        start = state.clock.start
        state.clock.ends = [] if start is None else [start + float(e) for e in clock["ends"]]
        wall = clock["first_end_wall"]
        state.clock.first_end_wall = None if wall is None else float(wall)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    return _number(value) and math.isfinite(value)
