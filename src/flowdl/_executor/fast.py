"""Fast mode (`Graph.compile`): the static stretches of a plan compiled by `torch.compile`.

A *segment* is a maximal run of consecutive steps whose work is fixed once the
graph is built: modules, merges, residual sums, ``for_`` loops and dense gates.
Each segment becomes one function compiled with ``fullgraph=True`` (so a graph
break is an error, never a silent slowdown). Everything that decides something
at run time stays in the executor between segments: state reads (the first call
differs from the next), halting loops, switches, sparse gates, maps and nested
graphs. Their decisions therefore never cause a graph break or a recompilation.
Modules that Dynamo refuses to trace whole (`nn.RNN`, `nn.GRU`, `nn.LSTM`: "Attempted
to wrap RNN, GRU, or LSTM"), or steps containing one, run eagerly between segments too,
and so do modules sharded on their own by FSDP2's `fully_shard` (their hooks, which
gather the parameters, are "marked as skipped" by Dynamo); a graph sharded as a whole
keeps its hooks around the graph's call and compiles like any other.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from flowdl._control.base import ControlNode
from flowdl._control.gate import Gate
from flowdl._control.loop import Loop
from flowdl._control.switch import Switch
from flowdl._describe import first_line
from flowdl._errors import GraphError
from flowdl._executor.fusion import StackedChains, any_global_hooks, has_hooks
from flowdl._executor.plan import Plan, Step, plan_of
from flowdl._executor.state import StateRead
from flowdl._executor.steps import run_steps

__all__ = [
    "EAGER_ONLY",
    "FastItem",
    "FusedParts",
    "InlineGraph",
    "Segment",
    "fused_step",
    "is_static",
    "split_plan",
]

EAGER_ONLY: tuple[type[nn.Module], ...] = (nn.RNNBase,)
"""Modules `torch.compile(fullgraph=True)` cannot trace: the steps holding them stay eager."""


def is_static(fn: Any) -> bool:
    """Whether a step's work is fixed at build time, so it can be compiled in a segment."""
    if isinstance(fn, StateRead):
        return False
    if isinstance(fn, nn.Module) and any(
        isinstance(m, EAGER_ONLY) or _sharded(m) for m in fn.modules()
    ):
        return False
    plan = plan_of(fn)
    if plan is not None:
        return inlinable(plan)
    if isinstance(fn, ControlNode):
        fixed = (isinstance(fn, Loop) and fn.mode == "for" and fn._trace is None) or (
            isinstance(fn, Gate) and not fn.sparse
        )
        inner_plans = (plan_of(inner) for _, inner in fn.inner())
        return fixed and all(inlinable(plan) for plan in inner_plans if plan is not None)
    return True


def _sharded(module: nn.Module) -> bool:
    """Whether FSDP2 (`fully_shard`) manages `module`: its hooks gather the parameters
    around each call, and Dynamo refuses to trace them inside a ``fullgraph`` segment."""
    fsdp = sys.modules.get("torch.distributed.fsdp")  # nothing is sharded before its import
    managed = getattr(fsdp, "FSDPModule", None)
    return isinstance(managed, type) and isinstance(module, managed)


def inlinable(plan: Plan) -> bool:
    """A nested graph's plan whose steps can run inside the parent's compiled segment: no
    state, no ``reset()``, no tags (a nested graph with tags runs its own call, in its own
    fast mode, so that it reports its tags as in eager mode), only static steps
    (recursively)."""
    return (
        not plan.cells
        and not plan.resets
        and not plan.tag_slots
        and all(is_static(step.fn) for step in plan.steps)
    )


class InlineGraph:
    """Runs a nested graph's plan directly, inside a compiled segment.

    Skips what `Graph.forward` does around the plan (input checks, the context,
    error wrapping); only graphs without tags or state are inlined (`inlinable`).
    """

    def __init__(self, plan: Plan) -> None:
        self.n_inputs = plan.n_inputs
        self.n_slots = plan.n_slots
        self.out_slot = plan.out_slot
        self.steps = tuple(inline_step(step) for step in plan.steps)

    def __call__(self, *inputs: Any) -> Any:
        vals: list[Any] = [None] * self.n_slots
        vals[: self.n_inputs] = inputs
        run_steps(self.steps, vals)
        return vals[self.out_slot]


def _inlined(fn: Any) -> Any:
    """`fn`, or an `InlineGraph` running its plan when `fn` is a graph."""
    plan = plan_of(fn)
    return fn if plan is None else InlineGraph(plan)


def inline_step(step: Step) -> Step:
    """`step` with nested graphs (also inside a loop or a gate) replaced by `InlineGraph`."""
    fn = step.fn
    if plan_of(fn) is not None:
        return step._replace(fn=_inlined(fn))
    if isinstance(fn, Loop) and plan_of(fn.body) is not None:
        loop = Loop(_inlined(fn.body), fn.mode, fn.max_iter)
        loop.bind_refs(fn._ref_names, fn._named, fn._ref_rows)
        loop._last = fn._last  # the graph's loop still reports what happened
        return step._replace(fn=loop)
    if isinstance(fn, Gate) and any(plan_of(e) is not None for e in fn.experts):
        gate = Gate(_inlined(fn.router), [_inlined(e) for e in fn.experts])
        gate.bind_refs(fn._ref_names, fn._named, fn._ref_rows)
        return step._replace(fn=gate)
    return step


class Segment:
    """Consecutive static steps compiled as one function of the slots they read."""

    def __init__(
        self, steps: tuple[Step, ...], compile_kwargs: dict[str, Any], step_ids: tuple[str, ...]
    ) -> None:
        self.steps = steps
        self.step_ids = step_ids
        inlined = tuple(inline_step(step) for step in steps)
        reads: list[int] = []
        written: set[int] = set()
        for _, a, b, rest, out, _ in steps:
            for slot in (a, *((b,) if b >= 0 else ()), *(rest or ())):
                if slot not in written and slot not in reads:
                    reads.append(slot)
            written.add(out)
        self.reads = tuple(reads)
        self.writes = tuple(sorted(written))

        def segment(*inputs: Any) -> tuple[Any, ...]:
            vals = dict(zip(self.reads, inputs, strict=True))
            run_steps(inlined, vals)
            return tuple(vals[s] for s in self.writes)

        # Dynamo caches compiled code per code object: each segment gets its own
        # copy, or the segments of all graphs would share (and exhaust) one cache.
        segment.__code__ = segment.__code__.replace(co_name=f"flowdl_segment_{self.first}")
        self.compiled: Callable[..., tuple[Any, ...]] = torch.compile(
            segment, fullgraph=True, **compile_kwargs
        )

    @property
    def first(self) -> int:
        """The index of the segment's first step."""
        return self.steps[0].index

    def __call__(self, vals: list[Any]) -> None:
        results = self.compiled(*[vals[s] for s in self.reads])
        for slot, value in zip(self.writes, results, strict=True):
            vals[slot] = value

    def locate(self, vals: list[Any], error: Exception) -> tuple[int, Exception]:
        """Re-run the failed segment eagerly: the failing step and its eager exception.

        Raises:
            GraphError: every step runs eagerly; only the compiled code failed.
        """
        i = self.first
        try:
            for step in self.steps:
                i = step.index
                run_steps((step,), vals)
        except Exception as eager:
            return i, eager
        raise GraphError(
            f"the compiled segment of nodes {', '.join(self.step_ids)} failed, but the same "
            f"nodes run eagerly: {type(error).__name__}: {first_line(error)}",
            expected="torch.compile to compile what runs eagerly",
            received=f"{type(error).__name__} from torch.compile",
            fix="call g.compile() with other options (e.g. backend='aot_eager'), or "
            "rebuild the graph to run it eagerly",
        ) from error


class FusedParts:
    """A per-sample switch or a sparse gate whose identical parts run as one
    (`flowdl._executor.fusion`); the construct's own loop wherever they cannot."""

    def __init__(self, construct: Switch | Gate, stacked: StackedChains) -> None:
        self.construct = construct
        self.stacked = stacked

    def __call__(self, x: Any, *refs: Any) -> Any:
        c = self.construct
        if has_hooks(c) or any_global_hooks():  # every hook must see the construct's call
            return c(x, *refs)  # unfused: its forward passes no stacked chains
        if isinstance(c, Switch):
            return c.route(x, refs, self.stacked)
        return c.mix(x, refs, self.stacked)


def fused_step(step: Step) -> Step:
    """`step` with its switch's branches or its sparse gate's experts fused, if they can be.

    Example:
        >>> import flowdl as fl
        >>> mlp = lambda: nn.Sequential(nn.Linear(4, 4), nn.GELU(), nn.Linear(4, 4))
        >>> switch = Switch(fl.ArgmaxSelector(4, 2), [mlp(), mlp()])
        >>> type(fused_step(Step(switch, 0, -1, None, 1, 0)).fn).__name__
        'FusedParts'
    """
    fn = step.fn
    stacked = None
    if isinstance(fn, Switch):
        stacked = StackedChains.of(list(fn.branches))
    elif isinstance(fn, Gate) and fn.sparse:
        stacked = StackedChains.of(list(fn.experts))
    if stacked is None or not isinstance(fn, (Switch, Gate)):
        return step
    return step._replace(fn=FusedParts(fn, stacked))


FastItem = Segment | Step
"""What fast mode runs: a compiled segment, or a step the executor runs as in eager mode."""


def split_plan(plan: Plan, compile_kwargs: dict[str, Any]) -> tuple[FastItem, ...]:
    """The plan's steps as compiled segments and the dynamic steps between them."""
    items: list[FastItem] = []
    run: list[Step] = []

    def close() -> None:
        if run:
            ids = tuple(plan.step_nodes[step.index].id for step in run)
            items.append(Segment(tuple(run), compile_kwargs, ids))
            run.clear()

    for step in plan.steps:
        if is_static(step.fn):
            run.append(step)
        else:
            close()
            items.append(fused_step(step))
    close()
    return tuple(items)
