"""Shrinking a failing description to a smaller one that fails the same way.

`shrink(description, verdict)` tries simpler versions of the description one edit
at a time (drop a call, drop a step of any graph, put a leaf in place of a nested
graph, run a loop once, halve the batches) and keeps an edit when the trial still ends
with the same status and the same kind of first finding. What it returns is no
longer drawn from the seed: the report prints it next to the seed's own rerun
command.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from functools import partial

from flowdl._fuzz.ir import (
    CallSpec,
    Description,
    GraphSpec,
    Leaf,
    Loop,
    Module,
    nested_graphs,
    rewrite,
)
from flowdl._fuzz.trial import Verdict, run_trial

MAX_TRIALS = 300
"""At most this many trials per shrink."""


def signature(verdict: Verdict) -> str:
    """What a verdict is, for "fails the same way": its status and the kind of its
    first finding (numbers and the call index left out).

    Example:
        >>> signature(Verdict("mismatch", ["call 2: output differs: max abs diff 0.3"]))
        'mismatch: output differs'
    """
    first = verdict.details[0] if verdict.details else ""
    first = re.sub(r"^call \d+: ", "", first)
    first = re.split(r": |\(| is | w\.r\.t\. ", first, maxsplit=1)[0]
    return f"{verdict.status}: {first.strip()}"


def _graph_edits(spec: GraphSpec) -> Iterator[Callable[[GraphSpec], Module]]:
    """Simpler versions of one graph: without a step, with a loop run once."""
    for index in range(len(spec.steps)):
        yield partial(_without, index=index)
    for index, step in enumerate(spec.steps):
        if isinstance(step, Loop) and step.count > 1:
            yield partial(_once, index=index)


def _without(graph: GraphSpec, index: int) -> Module:
    return replace(graph, steps=graph.steps[:index] + graph.steps[index + 1 :])


def _once(graph: GraphSpec, index: int) -> Module:
    loop = graph.steps[index]
    assert isinstance(loop, Loop)
    return replace(
        graph, steps=(*graph.steps[:index], replace(loop, count=1), *graph.steps[index + 1 :])
    )


def _as_leaf(spec: GraphSpec) -> Module:
    """A leaf in place of a nested graph, reading as many refs as it had inputs."""
    return Leaf("tanh", spec.entry.seed, spec.dim, spec.dim, len(spec.inputs))


def candidates(description: Description) -> Iterator[Description]:
    """Every one-edit simplification of `description`, simplest-first."""
    calls = description.calls
    for index in range(len(calls) - 1, -1, -1):
        if len(calls) > 1:  # the call after a dropped reset resets (the batch may change)
            after = calls[index + 1 : index + 2]
            if after and calls[index].reset:
                after = (replace(after[0], reset=True),)
            kept = (*calls[:index], *after, *calls[index + 2 :])
            yield replace(description, calls=(replace(kept[0], reset=False), *kept[1:]))
    top = description.graph
    for spec in nested_graphs(top):
        graph = rewrite(top, spec.uid, _as_leaf)
        assert isinstance(graph, GraphSpec)
        yield replace(description, graph=graph)
    for spec in [top, *nested_graphs(top)]:
        for edit in _graph_edits(spec):
            graph = rewrite(top, spec.uid, edit)
            assert isinstance(graph, GraphSpec)
            yield replace(description, graph=graph)
    if any(call.batch > 1 for call in calls):  # every call: state keeps its batch size
        smaller = tuple(CallSpec(max(1, c.batch // 2), c.reset) for c in calls)
        yield replace(description, calls=smaller)


def shrink(description: Description, verdict: Verdict, fast: bool = False) -> Description:
    """A smaller description whose trial fails as `verdict` says (in fast mode when
    `fast`); `description` itself when no edit keeps the failure.

    Example:
        >>> from flowdl._fuzz.ir import CallSpec, Description, GraphSpec, Leaf, Through
        >>> g = GraphSpec("top", 2, Leaf("tanh", 1, 2, 2),
        ...               steps=(Through(Leaf("sin", 2, 2, 2)), Through(Leaf("linear", 3, 2, 2))))
        >>> bad = Description(0, "chain", g, (CallSpec(2), CallSpec(2)), invalid="made up")
        >>> verdict, _ = run_trial(bad)
        >>> small = shrink(bad, verdict)
        >>> len(small.graph.steps), len(small.calls)
        (0, 1)
    """
    wanted = signature(verdict)
    trials = 0
    improved = True
    while improved and trials < MAX_TRIALS:
        improved = False
        for candidate in candidates(description):
            trials += 1
            if signature(run_trial(candidate, fast=fast)[0]) == wanted:
                description, improved = candidate, True
                break
            if trials >= MAX_TRIALS:
                break
    return description
