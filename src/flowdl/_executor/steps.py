"""Every loop that runs the steps of a plan, and the one way a failed step is reported.

A step is ``vals[out] = fn(vals[a], vals[b], *[vals[j] for j in rest])`` (`Step`).
The loops here are the only code that runs steps:

- `run_plan`: the graph's loop, with the context checked between steps when there is
  one; in fast mode it hands over to `run_fast`;
- `run_lean`: the call of a graph that has nothing to do but its steps (no state, no
  tags, eager, no context): the hot loop on a fresh value list, from the graph's
  ``forward`` directly (a nested block, an expert, a loop body);
- `run_fast`: fast mode, compiled segments and the dynamic steps between them;
- `run_profiled`: the eager loop with a clock mark around every step and level;
- `run_steps`: the bare loop, inside compiled segments and inlined nested graphs;
- `run_recorded`: the eager loop with each step inside
  ``torch.profiler.record_function(<node path>)``, run instead of the hot loop while a
  torch profiler is active, so its traces name flowdl's nodes.

Whether a torch profiler is active is one read of the flag torch keeps for that
purpose (``torch.autograd.profiler._is_profiler_enabled``) per forward, not per step.

The hot loop (`run_plan` without a context) spells the step out inline, over the plan's
plain-tuple steps (`Plan.hot_steps`): a function call per step, or unpacking a
`NamedTuple`, would cost as much as the executor's whole per-node work. The others
call `run_step`. When a step raises, the loop hands the step's index and the error to
the graph's ``_step_failed``, which keeps the tags computed before it and raises the
error naming the node.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from types import SimpleNamespace
from typing import Any, NoReturn, Protocol

import torch
import torch.autograd.profiler
from torch import Tensor

from flowdl._context import Context
from flowdl._errors import passes_through
from flowdl._executor.plan import Plan, Step

__all__ = [
    "CompiledRun",
    "Instrument",
    "PlanRunner",
    "run_fast",
    "run_lean",
    "run_plan",
    "run_profiled",
    "run_recorded",
    "run_step",
    "run_steps",
]


# torch's own "is a profiler on" flag, read once per forward; a torch without it
# (the name is private) never records node names rather than failing every forward.
_TORCH_PROFILER: Any = (
    torch.autograd.profiler
    if isinstance(getattr(torch.autograd.profiler, "_is_profiler_enabled", None), bool)
    else SimpleNamespace(_is_profiler_enabled=False)
)


def torch_profiler_active() -> bool:
    """Whether a torch profiler (``torch.profiler.profile``) is recording now."""
    return bool(_TORCH_PROFILER._is_profiler_enabled)


class CompiledRun(Protocol):
    """A compiled stretch of steps in fast mode (`flowdl._executor.fast.Segment`)."""

    @property
    def first(self) -> int:
        """The index of its first step."""
        ...

    def __call__(self, vals: list[Any]) -> None: ...

    def locate(self, vals: list[Any], error: Exception) -> tuple[int, Exception]:
        """Re-run the steps eagerly after `error`: the failing step and its eager error.

        Raises:
            GraphError: the steps run eagerly; only the compiled code failed.
        """
        ...


class PlanRunner(Protocol):
    """What the loops need from the graph whose plan they run (`GraphCore`)."""

    _plan: Plan

    @property
    def _fast(self) -> Sequence[CompiledRun | Step] | None:
        """Fast mode's compiled segments and dynamic steps, or ``None`` (eager)."""
        ...

    def _step_failed(self, vals: list[Any], index: int, error: BaseException) -> NoReturn:
        """Keep the tags computed before step `index`, then raise what `error` means."""
        ...


class Instrument(Protocol):
    """Runs a graph's plan in place of the plain loop and measures it (profiling)."""

    def run(self, graph: PlanRunner, vals: list[Any], ctx: Context | None) -> object:
        """Run the plan on `vals` (as `run_plan` does); return what was measured."""
        ...

    def publish(self, graph: PlanRunner, measured: object) -> None:
        """After a successful call (state and tags written): keep what was measured."""
        ...


def run_steps(steps: Sequence[Step], vals: Any) -> None:
    """Run `steps` on `vals` (a list, or a dict of slots), with no bookkeeping: inside a
    compiled segment, where Dynamo inlines `run_step`."""
    for step in steps:
        run_step(step, vals)


def run_step(step: Step, vals: Any) -> None:
    """Run one step."""
    fn, a, b, rest, out = step.fn, step.a, step.b, step.rest, step.out
    if b < 0:
        vals[out] = fn(vals[a])
    elif rest is None:
        vals[out] = fn(vals[a], vals[b])
    else:
        vals[out] = fn(vals[a], vals[b], *[vals[j] for j in rest])


def run_plan(graph: PlanRunner, vals: list[Any], ctx: Context | None) -> None:
    """Run the graph's plan on `vals`: the executor's loop, or fast mode's segments.

    Eagerly, every step runs in order, the context (if any) checked before each.
    """
    fast = graph._fast
    if fast is not None:
        run_fast(graph, fast, vals, ctx)
        return
    if _TORCH_PROFILER._is_profiler_enabled and not torch.compiler.is_compiling():
        run_recorded(graph, vals, ctx)
        return
    i = -1
    try:
        if ctx is None:
            # The hot loop: the step spelled out inline. `i` outlives the loop: on an
            # error it names the failing step.
            for fn, a, b, rest, out, i in graph._plan.hot_steps:  # noqa: B007
                if b < 0:
                    vals[out] = fn(vals[a])
                elif rest is None:
                    vals[out] = fn(vals[a], vals[b])
                else:
                    vals[out] = fn(vals[a], vals[b], *[vals[j] for j in rest])
        else:
            check = ctx.check
            for step in graph._plan.steps:
                i = step.index
                check()
                run_step(step, vals)
    except BaseException as error:
        graph._step_failed(vals, i, error)


def run_lean(graph: PlanRunner, plan: Plan, inputs: tuple[Any, ...]) -> Any:
    """`run_plan`'s hot loop for a whole call of a graph that needs nothing else
    (``GraphCore._relean``; the caller checked the number of inputs and that nothing
    is compiling): its output. Under an active torch profiler the steps run recorded,
    as `run_plan` runs them, so the trace names this graph's nodes too."""
    vals: list[Any] = [None] * plan.n_slots
    vals[: plan.n_inputs] = inputs
    if _TORCH_PROFILER._is_profiler_enabled:
        run_recorded(graph, vals, None)
        return vals[plan.out_slot]
    i = -1
    try:
        for fn, a, b, rest, out, i in plan.hot_steps:  # noqa: B007
            if b < 0:
                vals[out] = fn(vals[a])
            elif rest is None:
                vals[out] = fn(vals[a], vals[b])
            else:
                vals[out] = fn(vals[a], vals[b], *[vals[j] for j in rest])
    except BaseException as error:
        graph._step_failed(vals, i, error)
    return vals[plan.out_slot]


def run_fast(
    graph: PlanRunner,
    items: Sequence[CompiledRun | Step],
    vals: list[Any],
    ctx: Context | None,
) -> None:
    """Fast mode: compiled segments, and the steps between them run as `run_plan` runs them.

    The context is checked between items. A segment that fails is run again
    eagerly to find the failing step, so the error names the node as in eager mode.
    """
    i = -1
    item: CompiledRun | Step | None = None
    try:
        for item in items:
            if ctx is not None:
                ctx.check()
            if isinstance(item, Step):
                i = item.index
                run_step(item, vals)
            else:
                i = item.first
                item(vals)
    except BaseException as error:
        if (
            item is not None
            and not isinstance(item, Step)
            and isinstance(error, Exception)
            and not passes_through(error)
        ):
            i, error = item.locate(vals, error)
        graph._step_failed(vals, i, error)


def step_names(graph: PlanRunner) -> list[str]:
    """The name each step is recorded under in a torch profiler's trace: the node's path,
    ``label.node_id`` in a labelled graph (``encoder.Linear_0``), else the node's id."""
    label = getattr(graph, "label", None)
    prefix = f"{label}." if isinstance(label, str) and label else ""
    return [prefix + node.id for node in graph._plan.step_nodes]


def run_recorded(graph: PlanRunner, vals: list[Any], ctx: Context | None) -> None:
    """The eager loop, each step inside ``record_function(<node path>)`` (`step_names`)."""
    record = torch.autograd.profiler.record_function
    i = -1
    try:
        for step, name in zip(graph._plan.steps, step_names(graph), strict=True):
            i = step.index
            if ctx is not None:
                ctx.check()
            with record(name):
                run_step(step, vals)
    except BaseException as error:
        graph._step_failed(vals, i, error)


Marks = tuple[int, int, list[tuple[int, int]], list[tuple[int, int]], list[Any]]
"""What `run_profiled` marked: first and last mark, level marks, step marks, output shapes."""


def run_profiled(
    graph: PlanRunner,
    levels: Sequence[Sequence[int]],
    vals: list[Any],
    ctx: Context | None,
    mark: Callable[[], int],
) -> Marks:
    """The eager loop, level by level, with `mark()` around every step and level.

    Returns:
        the first and last marks, ``(start, end)`` marks of each level and of each
        step (in execution order), and each step's output shape (``None`` when the
        output is not a tensor).
    """
    steps = graph._plan.steps
    names = step_names(graph) if _TORCH_PROFILER._is_profiler_enabled else None
    record = torch.autograd.profiler.record_function
    level_marks: list[tuple[int, int]] = []
    step_marks: list[tuple[int, int]] = []
    shapes: list[Any] = []
    i = -1
    try:
        first = mark()
        for level_steps in levels:
            level_start = mark()
            for i in level_steps:
                if ctx is not None:
                    ctx.check()
                step = steps[i]
                start = mark()
                if names is None:
                    run_step(step, vals)
                else:
                    with record(names[i]):
                        run_step(step, vals)
                step_marks.append((start, mark()))
                value = vals[step.out]
                shapes.append(tuple(value.shape) if isinstance(value, Tensor) else None)
            level_marks.append((level_start, mark()))
        last = mark()
    except BaseException as error:
        graph._step_failed(vals, i, error)
    return first, last, level_marks, step_marks, shapes
