"""The profiled loop: the executor's loop with a clock mark around every node and level.

`Graph.forward` picks it once per call, when profiling is on; the plain loop in
`Graph._run` stays as it is. A compiled graph (`Graph.compile`) runs its eager
plan here: node times need node boundaries, and a compiled segment has none.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from flowdl._context import Context
from flowdl._errors import Cancelled
from flowdl._profile.clock import Clock, clock_for
from flowdl._profile.profile import LevelTiming, NodeTiming, Profile

if TYPE_CHECKING:
    from flowdl._executor.graph import Graph
    from flowdl._executor.plan import Plan

Marks = tuple[Clock, int, int, list[tuple[int, int]], list[tuple[int, int]], list[Any]]
"""What a run measured: clock, first and last mark, level marks, node marks, output shapes."""


class Profiler:
    """The profiling of one graph: its profiled loop and what it knows of the plan."""

    def __init__(self, plan: Plan) -> None:
        self._levels = tuple(
            (plan.node_levels[plan.step_nodes[steps[0]].index], steps) for steps in plan.levels
        )
        self._nodes = tuple(
            (node.id, tuple(node.tags), plan.node_levels[node.index]) for node in plan.step_nodes
        )
        self._n_inputs = plan.n_inputs

    def run(self, graph: Graph, vals: list[Any], ctx: Context | None) -> Marks | None:
        """Run the plan as `Graph._run` does, marking the clock around each node and level."""
        if (
            torch.compiler.is_compiling()
        ):  # clocks are eager-only: torch.compile sees the plain loop
            graph._run(vals, ctx)
            return None
        clock = clock_for(vals[: self._n_inputs])
        mark = clock.mark
        steps = graph._plan.steps
        level_marks: list[tuple[int, int]] = []
        node_marks: list[tuple[int, int]] = []
        shapes: list[Any] = []
        i = -1
        try:
            first = mark()
            for _, level_steps in self._levels:
                level_start = mark()
                for i in level_steps:
                    if ctx is not None:
                        ctx.check()
                    fn, a, b, rest, out, _ = steps[i]
                    start = mark()
                    if b < 0:
                        vals[out] = fn(vals[a])
                    elif rest is None:
                        vals[out] = fn(vals[a], vals[b])
                    else:
                        vals[out] = fn(vals[a], vals[b], *[vals[j] for j in rest])
                    node_marks.append((start, mark()))
                    value = vals[out]
                    shapes.append(tuple(value.shape) if isinstance(value, Tensor) else None)
                level_marks.append((level_start, mark()))
            last = mark()
        except Cancelled:
            graph._keep_partial_tags(vals, i)
            raise
        except Exception as error:
            graph._keep_partial_tags(vals, i)
            raise graph._node_error(i, vals, error) from error
        return clock, first, last, level_marks, node_marks, shapes

    def publish(self, graph: Graph, marks: Marks | None) -> None:
        """Turn the marks of a finished forward into a `Profile`, keep it, call the hooks."""
        if marks is None:
            return
        clock, first, last, level_marks, node_marks, shapes = marks
        clock.finish()
        nodes = tuple(
            NodeTiming(node_id, tags, clock.seconds(start, end), level, shape)
            for (node_id, tags, level), (start, end), shape in zip(
                self._nodes, node_marks, shapes, strict=True
            )
        )
        levels = []
        k = 0
        for (index, steps), (start, end) in zip(self._levels, level_marks, strict=True):
            inside = nodes[k : k + len(steps)]
            k += len(steps)
            levels.append(
                LevelTiming(
                    index=index,
                    wall_seconds=clock.seconds(start, end),
                    node_seconds=sum(n.seconds for n in inside),
                    n_nodes=len(steps),
                )
            )
        profile = Profile(clock.seconds(first, last), tuple(levels), nodes, clock.device)
        graph.__dict__["_last_profile"] = profile
        hooks = graph._profile_hooks
        if hooks:
            for hook in list(hooks.values()):
                hook(profile)
