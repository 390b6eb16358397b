"""`Plan`: what a graph's forward runs, decided once by `flowdl._executor.planner`.

A plan is a tuple of `Step` s over integer *slots*: the forward pass keeps one list
of values per call and each step reads some slots and writes one. Every graph
keeps its plan in its ``_plan`` attribute; code below the graph (constructs, fast
mode, the module contracts) recognises a graph by it, with `plan_of`, without
importing the graph class.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

from flowdl._executor.state import StateCell, StateRead
from flowdl._ir.nodes import Node

__all__ = ["Plan", "RawStep", "Step", "nested_cells", "plan_of"]


class Step(NamedTuple):
    """``vals[out] = fn(vals[a], vals[b], *[vals[j] for j in rest])``.

    `b` is -1 for a single input and `rest` is None for fewer than three; `index`
    is the step's position in the plan. Plain integers keep the loops cheap and
    traceable by `torch.compile`; the hot loop runs the same steps as plain tuples
    (`RawStep`, `Plan.hot_steps`).
    """

    fn: Callable[..., Any]
    a: int
    b: int
    rest: tuple[int, ...] | None
    out: int
    index: int  # type: ignore[assignment]  # shadows tuple.index(): a step is never searched


RawStep = tuple[Callable[..., Any], int, int, "tuple[int, ...] | None", int, int]
"""A `Step` as a plain tuple, for the executor's hot loop.

CPython unpacks an exact tuple in a fast path; a `NamedTuple` (a tuple subclass)
takes the generic one, which costs about 45 ns more per step (measured: 1.98 against
1.10 µs for 20 steps), as much as the executor's whole per-node work.
"""


@dataclass(frozen=True, eq=False)
class Plan:
    """What `Graph.forward` runs.

    Attributes:
        n_inputs: number of graph inputs; they occupy slots ``0 .. n_inputs - 1``.
        input_names: their names (``"x"`` for the first).
        n_slots: size of the value list of one call.
        steps: one `Step` per non-input node, ordered by level then creation.
        hot_steps: the same steps as plain tuples (`RawStep`), for the hot loop.
        step_nodes: the node of each step.
        step_slots: the slots each step reads, in port order.
        levels: for each level ``>= 1``, the indices of its steps.
        node_levels: level of every node (inputs are level 0).
        out_slot: the slot of the graph's output.
        tag_index: tag -> position in `tag_slots`.
        tag_slots: the slot of each tagged value, in tag order.
        tag_steps: for each tag, the step that computes it (-1 for inputs).
        cells: the state cells, by tag.
        state_writes: ``(cell, slot)``: at the end of a call, ``cell.value`` is set
            from ``slot``.
        state_reads: every state read, by step.
        resets: ``(node, reset)`` for the ``reset(batch_size, device)`` method of each
            node module, once per module.
    """

    n_inputs: int
    input_names: tuple[str, ...]
    n_slots: int
    steps: tuple[Step, ...]
    hot_steps: tuple[RawStep, ...]
    step_nodes: tuple[Node, ...]
    step_slots: tuple[tuple[int, ...], ...]
    levels: tuple[tuple[int, ...], ...]
    node_levels: dict[int, int]
    out_slot: int
    tag_index: dict[str, int]
    tag_slots: tuple[int, ...]
    tag_steps: tuple[int, ...]
    cells: dict[str, StateCell]
    state_writes: tuple[tuple[StateCell, int], ...]
    state_reads: tuple[StateRead, ...]
    resets: tuple[tuple[Node, Callable[..., Any]], ...]


def plan_of(module: object) -> Plan | None:
    """The plan of a flowdl graph; ``None`` for anything else (a plain module, a function).

    Example:
        >>> import torch, flowdl as fl
        >>> plan_of(fl.Flow(torch.nn.ReLU()).build()).n_inputs, plan_of(torch.nn.ReLU())
        (1, None)
    """
    state = getattr(module, "__dict__", None)
    plan = state.get("_plan") if isinstance(state, dict) else None
    return plan if isinstance(plan, Plan) else None


def nested_cells(graph: Any) -> tuple[StateCell, ...]:
    """The state cells of every graph nested in `graph`: what a failed call restores."""
    return tuple(
        cell
        for module in graph.modules()
        if module is not graph
        for plan in (plan_of(module),)
        if plan is not None
        for cell in plan.cells.values()
    )
