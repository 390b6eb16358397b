"""The profiler: the instrument that times every step and level of a graph's forward.

When profiling is on, `GraphCore.forward` runs the plan through the graph's
`Profiler` (an `Instrument`) instead of the plain loop: it runs the executor's
profiled loop (`flowdl._executor.steps.run_profiled`) with a clock, and after the
call turns the marks into a `Profile`. A compiled graph (`Graph.compile`) runs its
eager plan here: node times need node boundaries, and a compiled segment has none.
The profiler derives what it needs from the plan it was built for, and again when
the graph's plan changes (a submodule was replaced).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch

from flowdl._context import Context
from flowdl._executor.plan import Plan
from flowdl._executor.steps import Marks, PlanRunner, run_plan, run_profiled
from flowdl._profile.clock import Clock, clock_for
from flowdl._profile.profile import LevelTiming, NodeTiming, Profile

__all__ = ["Measured", "Profiler"]

Measured = tuple[Clock, Marks]
"""What a profiled run measured: its clock and the marks of `run_profiled`."""


class Profiler:
    """The instrument of a graph with profiling on.

    Args:
        keep: called with each new `Profile`, after a successful forward.
    """

    def __init__(self, keep: Callable[[Profile], None]) -> None:
        self._keep = keep
        self._plan: Plan | None = None

    def _derive(self, plan: Plan) -> None:
        """What a profile needs from `plan`: the levels, and each step's node."""
        self._plan = plan
        self._levels = tuple(
            (plan.node_levels[plan.step_nodes[steps[0]].index], steps) for steps in plan.levels
        )
        self._nodes = tuple(
            (node.id, tuple(node.tags), plan.node_levels[node.index]) for node in plan.step_nodes
        )

    def run(self, graph: PlanRunner, vals: list[Any], ctx: Context | None) -> Measured | None:
        """Run the plan with a clock mark around each node and level."""
        if (
            torch.compiler.is_compiling()
        ):  # clocks are eager-only: torch.compile sees the plain loop
            run_plan(graph, vals, ctx)
            return None
        plan = graph._plan
        if plan is not self._plan:
            self._derive(plan)
        clock = clock_for(vals[: plan.n_inputs])
        marks = run_profiled(graph, [steps for _, steps in self._levels], vals, ctx, clock.mark)
        return clock, marks

    def publish(self, graph: PlanRunner, measured: object) -> None:
        """Turn the marks of a finished forward into a `Profile`, keep it, call the hooks."""
        if measured is None:  # run under torch.compile: nothing was measured
            return
        clock, (first, last, level_marks, node_marks, shapes) = cast("Measured", measured)
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
        self._keep(Profile(clock.seconds(first, last), tuple(levels), nodes, clock.device))
