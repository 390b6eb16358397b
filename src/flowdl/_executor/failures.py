"""What a failed graph call says: the node, the builder call, what it received, a fix.

The step loops (`flowdl._executor.steps`) hand a failure to the graph, which keeps
the tags computed before it and raises the `GraphError` built here. Nothing here
runs unless a call fails.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from flowdl._describe import describe_value, first_line, plural
from flowdl._errors import ControlFlowError, GraphError
from flowdl._executor.plan import Plan
from flowdl._ir.nodes import Node, NodeKind
from flowdl._ir.record import FlowRecord

__all__ = [
    "inference_state_error",
    "input_count_error",
    "named_inputs",
    "node_error",
    "reset_error",
    "state_export_error",
]


def state_export_error(plan: Plan, nested: tuple[Any, ...]) -> GraphError:
    """`torch.export` was given a graph that carries state from call to call."""
    tags = sorted({*plan.cells, *(cell.tag for cell in nested)})
    return GraphError(
        f"a graph with state ({', '.join(map(repr, tags))}) cannot be exported: an exported "
        "program cannot keep a value from one call to the next",
        expected="a graph without forward references (.using of a tag defined later) for "
        "torch.export",
        received=f"forward-reference state {', '.join(map(repr, tags))}",
        fix="export one step with the state as an input and an output: read it with "
        ".input('h') instead of a forward reference, make the last node return "
        "(output, new state), and carry the state yourself from call to call",
    )


def named_inputs(plan: Plan, given: tuple[Any, ...], named: dict[str, Any]) -> tuple[Any, ...]:
    """The inputs in call order, from positional values then keywords by declared name.

    Raises:
        GraphError: a keyword names no input, names one already given by position,
            or an input is missing.
    """
    names = plan.input_names
    call = f"g({', '.join(names)})"
    for name in named:
        if name not in names:
            raise GraphError(
                f"the graph has no input named {name!r}",
                expected=f"inputs {', '.join(names)} ({call}; names after x come from .input)",
                received=f"keyword {name}=...",
                fix="pass the value by one of the declared names, or declare it with "
                f".input({name!r}) when building",
            )
        if names.index(name) < len(given):
            raise GraphError(
                f"the input {name!r} is given twice: by position and by name",
                expected=call,
                received=f"{plural(len(given), 'positional input')} and {name}=...",
                fix=f"pass {name!r} once",
            )
    missing = [n for n in names[len(given) :] if n not in named]
    if missing:
        raise GraphError(
            f"the graph call misses {plural(len(missing), 'input')}: {', '.join(missing)}",
            expected=call,
            received=", ".join(
                [*(f"{n} (by position)" for n in names[: len(given)]), *(f"{n}=" for n in named)]
            ),
            fix="pass every declared input, by position or by name",
        )
    return (*given, *(named[n] for n in names[len(given) :]))


def inference_state_error(
    plan: Plan, record: FlowRecord, i: int, nested: tuple[Any, ...], error: Exception
) -> GraphError | None:
    """Step `i` failed because state written under ``torch.inference_mode()`` meets
    autograd; ``None`` when that is not why."""
    if not isinstance(error, RuntimeError) or "nference tensor" not in str(error):
        return None
    cells = [*plan.cells.values(), *nested]
    tags = sorted({c.tag for c in cells if isinstance(c.value, Tensor) and c.value.is_inference()})
    if not tags:
        return None
    node = plan.step_nodes[i]
    return GraphError(
        f"the state {', '.join(map(repr, tags))} was written under torch.inference_mode(), "
        "and inference tensors cannot take part in a call that records gradients",
        node_id=node.id,
        tags=tuple(node.tags),
        call=str(node.call),
        expected="state written outside inference mode (torch.no_grad() is fine)",
        received=f"{type(error).__name__}: {first_line(error)}",
        fix="evaluate under torch.no_grad() instead of torch.inference_mode(), or call "
        "g.reset_state() after evaluating and before training again",
    )


def input_count_error(plan: Plan, got: int) -> GraphError:
    """The graph was called with `got` inputs instead of ``plan.n_inputs``."""
    names = plan.input_names
    return GraphError(
        f"the graph takes {plural(len(names), 'input')} ({', '.join(names)}), got {got}",
        expected=f"g({', '.join(names)})"
        + (" — the names after x come from .input(...)" if len(names) > 1 else ""),
        received=f"{plural(got, 'input')}",
        fix="pass one value per graph input, in declaration order",
    )


def reset_error(node: Node, batch: int, device: Any, error: Exception) -> GraphError:
    """A node module's ``reset(batch_size, device)``, called before the forward, raised."""
    return GraphError(
        f"{node.id}.reset(batch_size={batch}, device={device}) raised "
        f"{type(error).__name__}: {first_line(error)}",
        node_id=node.id,
        tags=tuple(node.tags),
        call=str(node.call),
        fix="reset(batch_size, device) runs before every forward of the graph "
        "(the Resettable protocol); make it accept this batch size and device",
    )


def node_error(
    plan: Plan, record: FlowRecord, i: int, vals: list[Any], error: Exception
) -> GraphError:
    """Step `i` raised `error`: the error naming its node, its inputs and a fix."""
    node = plan.step_nodes[i]
    values = [vals[s] for s in plan.step_slots[i]]
    labels = _port_labels(node, record)
    if node.kind is NodeKind.STATE_READ:
        fix: str | None = (
            f"the first call's value of state {node.state_tag!r} could not be made from the "
            "consumer's stream; declare it with .tag(name, init=shape_or_callable)"
        )
    else:
        fix = _state_batch_hint(plan, record, node.inputs, values)
    inputs = tuple(f"{label}: {describe_value(v)}" for label, v in zip(labels, values, strict=True))
    if isinstance(error, ControlFlowError):
        return GraphError(
            f"{node.id}: {error.problem}",
            node_id=node.id,
            tags=tuple(node.tags),
            call=str(node.call),
            expected=error.expected,
            received="\n".join(
                [*(f"input {i}: {d}" for i, d in enumerate(inputs)), error.received or ""]
            ).strip(),
            fix=fix or error.fix,
        )
    return GraphError(
        f"{node.id} raised {type(error).__name__}: {first_line(error)}",
        node_id=node.id,
        tags=tuple(node.tags),
        call=str(node.call),
        inputs=inputs,
        fix=fix,
    )


def _port_labels(node: Node, record: FlowRecord) -> list[str]:
    nodes = record.nodes
    if node.kind is NodeKind.STATE_READ:
        return ["consumer's stream (shapes the first call's zeros)"]
    if node.kind is NodeKind.MERGE:
        labels = [f"branch {k}" for k in range(node.n_stream)]
    elif node.kind is NodeKind.RESIDUAL:
        labels = ["stream", "module output"]
    else:
        labels = ["stream"]
    for name, producer in zip(node.ref_names, node.inputs[node.n_stream :], strict=True):
        state = nodes[producer].kind is NodeKind.STATE_READ
        labels.append(f"ref {name!r}" + (" (state from the previous call)" if state else ""))
    return labels


def _state_batch_hint(
    plan: Plan, record: FlowRecord, inputs: list[int], values: list[Any]
) -> str | None:
    """Blame a batch-size change only when the state really is a previous call's value."""
    nodes = record.nodes
    stream = values[0] if values else None
    if not isinstance(stream, Tensor) or stream.dim() == 0:
        return None
    for producer, value in zip(inputs, values, strict=True):
        if (
            nodes[producer].kind is NodeKind.STATE_READ
            and plan.cells[nodes[producer].state_tag or ""].value is not None
            and isinstance(value, Tensor)
            and value.dim() > 0
            and value.shape[0] != stream.shape[0]
        ):
            return (
                f"state {nodes[producer].state_tag!r} from the previous call has batch "
                f"size {value.shape[0]} but this call's stream has {stream.shape[0]}; "
                "call g.reset_state() when the batch size changes"
            )
    return None
