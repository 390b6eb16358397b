"""Dotted paths into the graph tree: ``"encoder.scan.hidden"``.

Every segment but the last names a labelled graph nested at that level; the last
names a nested graph, a tag, a tag group, or a metric (a name given to
``record``). There is no searching: an unknown segment is an error listing what
exists at that level. Names starting with ``_`` are internal to their graph: a
parent's paths do not reach them.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any

from flowdl._errors import Field, FlowdlError
from flowdl._executor.core import GraphCore
from flowdl._observe.state import values_of
from flowdl._tree.children import children

__all__ = ["PathError", "PathKind", "Target", "check_local_name", "resolve", "split_path"]

_NAME = re.compile(r"[^.\s]+")
"""A name: no dots, no whitespace, not empty."""
_PATH = re.compile(r"[^.\s]+(?:\.[^.\s]+)*")
"""Names joined by single dots."""


class PathKind(enum.Enum):
    """What a path names (`Graph.validate_path`).

    Example:
        >>> import torch, flowdl as fl
        >>> inner = fl.Flow(torch.nn.Linear(2, 2)).tag("hidden").label("encoder").build()
        >>> g = fl.Flow(inner).build()
        >>> g.validate_path("encoder"), g.validate_path("encoder.hidden")
        (<PathKind.SUBGRAPH: 'subgraph'>, <PathKind.TAG: 'tag'>)
    """

    SUBGRAPH = "subgraph"
    """A labelled graph nested in the tree."""
    TAG = "tag"
    """A tag of a graph of the tree."""
    TAG_GROUP = "tag group"
    """A tag group (`Flow.tag_group`): its member tags."""
    METRIC = "metric"
    """A name given to ``record`` (or buffered by ``collect``) that is not a tag."""


class PathError(FlowdlError, KeyError):
    """A path names nothing in the graph tree. A `KeyError`, written for people.

    Attributes:
        problem: one line saying what went wrong.
        path: the path asked for.
        exists: what exists at the level where the path went wrong.
        fix: how to fix it, or ``None``.
    """

    def __init__(self, problem: str, *, path: str, exists: str, fix: str | None = None) -> None:
        super().__init__(problem, fix=fix)
        self.path = path
        self.exists = exists

    def fields(self) -> list[Field]:
        return [("path", repr(self.path)), ("exists", self.exists), ("fix", self.fix)]


@dataclass(frozen=True)
class Target:
    """Where a path leads.

    Attributes:
        kind: what the last segment names.
        graph: the graph holding the last segment (for `PathKind.SUBGRAPH`, its parent).
        name: the last segment.
        prefix: the dotted path of `graph` from the root, with a trailing dot (or ``""``).
        subgraph: for `PathKind.SUBGRAPH`, the nested graph.
    """

    kind: PathKind
    graph: GraphCore
    name: str
    prefix: str
    subgraph: GraphCore | None = None

    @property
    def members(self) -> tuple[str, ...]:
        """The tags named: one for a tag, the members of a tag group, none otherwise."""
        if self.kind is PathKind.TAG:
            return (self.name,)
        if self.kind is PathKind.TAG_GROUP:
            return tuple(self.graph._record.groups[self.name])
        return ()


def split_path(path: Any, call: str) -> list[str]:
    """The segments of `path`.

    Raises:
        TypeError: `path` is not a string.
        ValueError: an empty segment or whitespace.
    """
    if not isinstance(path, str):
        raise TypeError(
            f"{call} takes a path as a string such as 'encoder.hidden', got "
            f"{type(path).__name__} {path!r}"
        )
    if _PATH.fullmatch(path) is None:
        raise ValueError(
            f"{call}: {path!r} is not a path; a path is labels and a final tag or label "
            "joined by single dots, without spaces, such as 'encoder.scan.hidden'"
        )
    return path.split(".")


def describe_level(graph: GraphCore, internal: bool) -> str:
    """What exists in `graph`, for an error message: nested graphs, tags, groups, metrics."""
    tags = [t for t in graph._record.tags if internal or not t.startswith("_")]
    groups = list(graph._record.groups)
    store = values_of(graph)
    tag_set = set(graph._record.tags)
    metrics = [
        m
        for m in (store.known_names() if store is not None else [])
        if m not in tag_set and (internal or not m.startswith("_"))
    ]
    parts = [
        ("nested graphs", list(children(graph))),
        ("tags", tags),
        ("tag groups", groups),
        ("metrics", metrics),
    ]
    text = "; ".join(f"{what}: {', '.join(names)}" for what, names in parts if names)
    return f"{graph.short_description()} has {text or 'no nested graphs, tags or metrics'}"


def resolve(
    root: GraphCore, path: Any, call: str, *, new_name: bool = False, prefer_names: bool = False
) -> Target:
    """Follow `path` from `root`.

    A last segment that is both a nested graph's label and a tag (allowed when the
    tag names the node holding that graph) means the graph, unless `prefer_names`.

    Args:
        root: the graph the path starts at.
        path: the dotted path.
        call: the method, for messages (``"g.freeze()"``).
        new_name: the last segment may be a name not seen yet (``record_at``).
        prefer_names: a tag or metric wins over a nested graph of the same name
            (the observation methods, which read values).

    Raises:
        PathError: a segment names nothing at its level, a segment before the last
            is not a nested graph, or the last is internal to a nested graph.
    """
    segments = split_path(path, call)
    graph, prefix = root, ""
    for depth, segment in enumerate(segments[:-1]):
        found = children(graph).get(segment)
        if found is None:
            what = _kind_of(graph, segment, internal=depth == 0)
            problem = (
                f"{call}: {segment!r} is a {what} of {graph.short_description()}, not a "
                "nested graph; only labelled graphs have paths below them"
                if what
                else f"{call}: no nested graph {segment!r} in {graph.short_description()}"
            )
            raise PathError(
                problem,
                path=path,
                exists=describe_level(graph, internal=depth == 0),
                fix="label the graph with .label(name) to make it part of the tree"
                if not what
                else None,
            )
        graph, prefix = found, f"{prefix}{segment}."
    name = segments[-1]
    below_root = len(segments) > 1
    child = children(graph).get(name)
    if child is not None and not prefer_names:
        return Target(PathKind.SUBGRAPH, graph, name, prefix, child)
    if below_root and name.startswith("_") and child is None:
        raise PathError(
            f"{call}: {name!r} is internal to {graph.short_description()}",
            path=path,
            exists=describe_level(graph, internal=False),
            fix="names starting with '_' are reached only from their own graph: "
            f"g.subgraph({prefix[:-1]!r}) gives that graph",
        )
    record = graph._record
    if name in record.tags:
        return Target(PathKind.TAG, graph, name, prefix)
    if name in record.groups:
        return Target(PathKind.TAG_GROUP, graph, name, prefix)
    store = values_of(graph)
    if store is not None and store.knows(name):
        return Target(PathKind.METRIC, graph, name, prefix)
    if child is not None:
        return Target(PathKind.SUBGRAPH, graph, name, prefix, child)
    if new_name:
        return Target(PathKind.METRIC, graph, name, prefix)
    raise PathError(
        f"{call}: no {name!r} in {graph.short_description()}",
        path=path,
        exists=describe_level(graph, internal=not below_root),
        fix="check the spelling; a metric exists once it was recorded or collected",
    )


def _kind_of(graph: GraphCore, name: str, internal: bool) -> str | None:
    if not internal and name.startswith("_"):
        return None
    if name in graph._record.tags:
        return "tag"
    if name in graph._record.groups:
        return "tag group"
    store = values_of(graph)
    if store is not None and store.knows(name):
        return "metric"
    return None


def check_local_name(name: Any, call: str, at: str) -> str:
    """A name of this graph (not a path) for the local methods; dots point to `at`.

    Raises:
        TypeError: `name` is not a string.
        ValueError: `name` is empty, has whitespace, or is a dotted path.
    """
    if not isinstance(name, str):
        raise TypeError(f"{call} takes names as strings, got {type(name).__name__} {name!r}")
    if "." in name:
        raise ValueError(
            f"{call}: {name!r} is a path, and {call} names what is in this graph; "
            f"use {at}({name!r}) to reach into a nested graph"
        )
    if _NAME.fullmatch(name) is None:
        raise ValueError(
            f"{call}: {name!r} is not a valid name; use a non-empty name without spaces "
            "(slashes are fine: 'val/loss')"
        )
    return name
