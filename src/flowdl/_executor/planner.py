"""Compile a `FlowRecord` into a `Plan`: levels, integer slots and one step per node.

Everything the forward pass needs is decided here, once: the order of the steps,
which slot each value lives in, which slots each step reads, how each node is
called. `Graph.forward` then only loops over `Plan.steps`.

Slots are reused once the value in them is dead, so a long chain holds no more
activations than the hand-written module would. Within one level no node writes a
slot that another node of that level reads or writes, so the nodes of a level can
run concurrently: a slot freed by readers of level ``L`` is reused only from level
``L + 1`` on, and a node overwrites its own input only when every other reader of
that input belongs to an earlier level.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from flowdl._control.base import ControlNode
from flowdl._errors import BuildError
from flowdl._executor.plan import Plan, Step
from flowdl._executor.state import StateCell, StateRead
from flowdl._ir.contracts import uses_forward_named
from flowdl._ir.nodes import Node, NodeKind
from flowdl._ir.record import FlowRecord

__all__ = ["NamedCall", "compile_plan", "compute_levels", "residual_add"]


class NamedCall:
    """Calls ``module.forward_named(stream, {tag: ref, ...})`` for a node with references."""

    __slots__ = ("module", "names")

    def __init__(self, module: Any, names: tuple[str, ...]) -> None:
        self.module = module
        self.names = names

    def __call__(self, stream: Any, *refs: Any) -> Any:
        return self.module.forward_named(stream, dict(zip(self.names, refs, strict=True)))


def residual_add(stream: Any, update: Any) -> Any:
    """The sum of `Flow.also`: ``stream + module(stream)``."""
    return stream + update


def compute_levels(nodes: list[Node]) -> dict[int, int]:
    """Longest-path layering: inputs are level 0, a node is one past its latest dependency."""
    consumers: dict[int, list[int]] = {n.index: [] for n in nodes}
    waiting: dict[int, int] = {}
    for node in nodes:
        deps = node.dependencies
        waiting[node.index] = len(deps)
        for d in deps:
            consumers[d].append(node.index)
    level: dict[int, int] = {}
    ready = [n.index for n in nodes if waiting[n.index] == 0]
    for r in ready:
        level[r] = 0
    while ready:
        nxt: list[int] = []
        for n in ready:
            for c in consumers[n]:
                waiting[c] -= 1
                if waiting[c] == 0:
                    level[c] = 1 + max(level[d] for d in nodes[c].dependencies)
                    nxt.append(c)
        ready = nxt
    if len(level) != len(nodes):
        stuck = [n.id for n in nodes if n.index not in level]
        raise BuildError(
            "the graph has a cycle",
            expected="every value computed from earlier values of the same call",
            received=f"nodes in a cycle or waiting on one: {', '.join(stuck)}",
            fix="read values of the previous call with .using(tag) before .tag(tag)",
        )
    return level


def per_sample_values(record: FlowRecord, level: dict[int, int]) -> dict[int, bool]:
    """For every node, whether its value has one row per sample of this call's stream.

    The rule (documented in docs/guarantees.md, "Per-sample halting"): the stream ``x`` is
    per-sample; an auxiliary input is shared unless declared
    ``.input(name, per_sample=True)``; the previous call's value of a tag (a
    forward reference) is per-sample when the value that writes it is; any other
    value is per-sample when one of its inputs is, unless one of its tags is
    declared ``shared``. Nothing is decided from shapes.
    """
    nodes = record.nodes
    order = sorted(nodes, key=lambda n: (level[n.index], n.index))
    stream = record.inputs[0] if record.inputs else -1
    rows = dict.fromkeys((n.index for n in nodes), False)
    changed = True
    while changed:  # state reads follow their writers, which may read them: a fixed point
        changed = False
        for node in order:
            if node.kind is NodeKind.INPUT:
                value = node.index == stream or node.input_name in record.per_sample_inputs
            elif node.kind is NodeKind.STATE_READ:
                writer = record.state_writers.get(node.state_tag or "")
                value = writer is not None and rows[writer]
            elif record.shared_tags.intersection(node.tags):
                value = False
            else:
                value = any(rows[d] for d in node.inputs)
            if value != rows[node.index]:  # only ever False -> True: the loop ends
                rows[node.index] = value
                changed = True
    return rows


def _step_fn(
    node: Node,
    cells: dict[str, StateCell],
    record: FlowRecord,
    rows: dict[int, bool],
    reads: dict[int, StateRead],
) -> Callable[..., Any]:
    if node.kind is NodeKind.STATE_READ:
        assert node.state_tag is not None
        assert node.consumer is not None
        consumer = record.nodes[node.consumer].module
        initial_state = getattr(consumer, "initial_state", None)
        read = reads[node.index] = StateRead(
            cells[node.state_tag],
            record.state_inits.get(node.state_tag),
            initial_state if callable(initial_state) else None,
        )
        return read
    if node.kind is NodeKind.RESIDUAL:
        return residual_add
    if isinstance(node.module, ControlNode):
        refs = node.inputs[node.n_stream :]
        # A state read is per-sample except on a first call that reads a tensor init
        # as it is: the construct asks the read at run time.
        per_sample = [reads.get(d, True) if rows[d] else False for d in refs]
        node.module.bind_refs(node.ref_names, uses_forward_named(node), per_sample)
        return node.module
    if uses_forward_named(node):
        return NamedCall(node.module, tuple(node.ref_names))
    fn: Callable[..., Any] = node.module
    return fn


def compile_plan(record: FlowRecord, cells: dict[str, StateCell] | None = None) -> Plan:
    """Order, place and prepare every node of `record` for execution.

    Args:
        record: what the builder recorded.
        cells: the state cells of an earlier plan of the same record, to keep (a
            graph recompiled after a submodule was replaced keeps its state).
    """
    nodes = record.nodes
    level = compute_levels(nodes)
    order = sorted(
        (n for n in nodes if n.kind is not NodeKind.INPUT), key=lambda n: (level[n.index], n.index)
    )

    reserved = {record.output, *record.tags.values(), *record.state_writers.values()}
    readers_left = Counter(d for n in order for d in n.dependencies)
    # For each value, the levels of the nodes that read it (one entry per reader node).
    read_levels: dict[int, list[tuple[int, int]]] = {}
    for n in order:
        for d in set(n.dependencies):
            read_levels.setdefault(d, []).append((n.index, level[n.index]))
    slot_of: dict[int, int] = {}
    free: list[tuple[int, int]] = []  # (slot, level at which it became free)
    n_slots = 0

    def release(node: int, at_level: int) -> None:
        if readers_left[node] == 0 and node not in reserved:
            free.append((slot_of[node], at_level))

    for input_node in record.inputs:
        slot_of[input_node] = n_slots
        n_slots += 1
    for input_node in record.inputs:
        release(input_node, 0)
    for node in order:
        here = level[node.index]
        deps = node.dependencies
        # An input whose other readers all belong to earlier levels dies here: write
        # the output over it, as `x = f(x)` does in a hand-written forward (the node
        # reads before it writes). Readers in this level could run concurrently, so
        # they rule it out.
        sole = next(
            (
                d
                for d in deps
                if d not in reserved
                and readers_left[d] == deps.count(d)
                and all(lv < here for r, lv in read_levels[d] if r != node.index)
            ),
            None,
        )
        if sole is not None:
            slot_of[node.index] = slot_of[sole]
            readers_left[sole] = 0
        else:
            for k, (slot, freed_at) in enumerate(free):
                if freed_at < here:
                    del free[k]
                    slot_of[node.index] = slot
                    break
            else:
                slot_of[node.index] = n_slots
                n_slots += 1
        for d in deps:
            if d != sole:
                readers_left[d] -= 1
                release(d, here)
        release(node.index, here)

    kept = cells or {}
    cells = {tag: kept.get(tag) or StateCell(tag) for tag in record.state_writers}
    rows = per_sample_values(record, level)
    state_reads: dict[int, StateRead] = {}
    steps: list[Step] = []
    step_slots: list[tuple[int, ...]] = []
    levels: dict[int, list[int]] = {}
    step_of: dict[int, int] = {}
    for i, node in enumerate(order):
        reads = [slot_of[d] for d in node.dependencies]
        b = reads[1] if len(reads) > 1 else -1
        rest = tuple(reads[2:]) or None
        fn = _step_fn(node, cells, record, rows, state_reads)
        steps.append(Step(fn, reads[0], b, rest, slot_of[node.index], i))
        step_slots.append(tuple(reads))
        levels.setdefault(level[node.index], []).append(i)
        step_of[node.index] = i

    resets: dict[int, tuple[Node, Callable[..., Any]]] = {}
    for node in order:
        reset = getattr(node.module, "reset", None) if node.module is not None else None
        if callable(reset) and id(node.module) not in resets:
            resets[id(node.module)] = (node, reset)

    tags = list(record.tags.items())
    return Plan(
        n_inputs=len(record.inputs),
        input_names=tuple(nodes[i].input_name or "x" for i in record.inputs),
        n_slots=n_slots,
        steps=tuple(steps),
        hot_steps=tuple(tuple(step) for step in steps),  # type: ignore[misc]
        step_nodes=tuple(order),
        step_slots=tuple(step_slots),
        levels=tuple(tuple(levels[k]) for k in sorted(levels)),
        node_levels=level,
        out_slot=slot_of[record.output],
        tag_index={tag: k for k, (tag, _) in enumerate(tags)},
        tag_slots=tuple(slot_of[n] for _, n in tags),
        tag_steps=tuple(step_of.get(n, -1) for _, n in tags),
        cells=cells,
        state_writes=tuple((cells[t], slot_of[n]) for t, n in record.state_writers.items()),
        state_reads=tuple(step.fn for step in steps if isinstance(step.fn, StateRead)),
        resets=tuple(resets.values()),
    )
