"""The module contracts: what a node's module must accept, checked at build and at replacement.

`Flow.build()` runs `check_node_module` and `check_state_consumer` on every node, and
the construct calls (``.gate``, ``.switch``, ``.loop``, ``.map``) run the construct
checks on their inner callables; replacing a submodule of a built graph runs the
same checks on the new module (`check_node`), so a graph never holds a module it
could not have been built with. A check raises `BuildError`, naming the node and
the builder call.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, cast

import torch
from torch import nn

from flowdl._control.base import ControlNode
from flowdl._control.gate import Gate
from flowdl._control.switch import Switch
from flowdl._describe import describe_module, plural
from flowdl._errors import BuildError
from flowdl._executor.plan import plan_of
from flowdl._ir.nodes import BuilderCall, Node, NodeKind
from flowdl._ir.record import FlowRecord
from flowdl._nodes.selectors import FixedSelector

__all__ = [
    "check_accepts",
    "check_arity",
    "check_choices",
    "check_fixed_selector",
    "check_node",
    "check_node_module",
    "check_protocol_method",
    "check_ref_names",
    "check_state_consumer",
    "check_stream_only",
    "describe_receiver",
    "uses_forward_named",
]


def _accepts(fn: Any) -> tuple[int, float] | str | None:
    """(fewest, most) positional arguments `fn` takes, its signature (``forward(*, x)``)
    if it requires a keyword-only argument, or None if it cannot be told."""
    plan = plan_of(fn)
    if plan is not None:  # a graph: exactly its inputs
        return plan.n_inputs, plan.n_inputs
    target = fn.forward if isinstance(fn, nn.Module) else fn
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return None
    fewest, most = 0, 0.0
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            most += 1
            if p.default is p.empty:
                fewest += 1
        elif p.kind is p.VAR_POSITIONAL:
            most = math.inf
        elif p.kind is p.KEYWORD_ONLY and p.default is p.empty:
            return f"{'forward' if target is not fn else getattr(fn, '__name__', 'fn')}{sig}"
    return fewest, most


def _describe_range(fewest: int, most: float) -> str:
    if most == math.inf:
        return f"at least {plural(fewest, 'input')}"
    if fewest == most:
        return plural(fewest, "input")
    return f"{fewest} to {int(most)} inputs"


def _describe_inputs(node: Node) -> str:
    if node.kind is NodeKind.MERGE:
        parts = [plural(node.n_stream, "branch output")]
    else:
        parts = ["the stream"]
    if node.ref_names:
        refs = ", ".join(repr(r) for r in node.ref_names)
        parts.append(f"{'the reference' if len(node.ref_names) == 1 else 'the references'} {refs}")
    return " and ".join(parts)


def describe_receiver(node: Node) -> str:
    """``Linear_0 (Linear(...))``, or ``the loop body of loop_0 (Linear(...))`` for a construct."""
    if node.ref_target is None:
        return f"{node.id} ({describe_module(node.module)})"
    role = node.module.inner()[0][0]
    return f"the {role} of {node.id} ({describe_module(node.ref_target)})"


def check_arity(node: Node) -> None:
    """The node's module must accept the inputs the graph will pass it."""
    if uses_forward_named(node):
        return  # forward_named(stream, refs) always takes two arguments; checked by ref_names
    fix = (
        "feed it what its forward() takes: remove or add .using(...) references, or give it "
        "a forward(x, *refs) or a forward_named(x, refs) method"
    )
    if node.kind is NodeKind.MERGE:
        fix = "pass .merge() a callable that takes every branch output positionally, e.g. fl.Add()"
    check_accepts(
        node.receiver,
        len(node.inputs),
        _describe_inputs(node),
        who=describe_receiver(node),
        call=node.where(),
        fix=fix,
    )


def check_accepts(fn: Any, n: int, inputs: str, *, who: str, call: str, fix: str) -> None:
    """`fn` must accept `n` positional inputs (described by `inputs`), when that can be told."""
    accepts = _accepts(fn)
    if isinstance(accepts, str):  # the graph passes inputs positionally
        raise BuildError(
            f"{who} requires a keyword-only argument: {accepts}; the graph passes "
            "inputs positionally",
            call=call,
            expected=f"a signature taking {inputs} positionally",
            received=accepts,
            fix="make the argument positional, e.g. forward(self, x) instead of "
            "forward(self, *, x), or give the keyword-only argument a default",
        )
    if accepts is None or accepts[0] <= n <= accepts[1]:
        return
    fewest, most = accepts
    raise BuildError(
        f"{who} accepts {_describe_range(fewest, most)}, "
        f"but the graph would call it with {n}: {inputs}",
        call=call,
        expected=_describe_range(fewest, most),
        received=f"{n}: {inputs}",
        fix=fix,
    )


def uses_forward_named(node: Node) -> bool:
    """Whether the graph calls ``forward_named(stream, refs)`` instead of the module.

    Only for single-stream nodes (through, also, fork, split branches): a merge
    always receives its branches positionally.
    """
    return (
        node.kind is NodeKind.MODULE
        and bool(node.ref_names)
        and callable(getattr(node.receiver, "forward_named", None))
    )


def check_ref_names(node: Node) -> None:
    """A module with ``ref_names()`` must be fed exactly those references by ``.using()``."""
    declared = getattr(node.receiver, "ref_names", None)
    if not callable(declared):
        return
    expected = list(declared())
    wired = list(node.ref_names)
    who = describe_receiver(node)
    if sorted(expected) == sorted(wired):
        if expected != wired and not uses_forward_named(node):
            raise BuildError(
                f"{who} receives its references positionally in .using() order, "
                f"which differs from its ref_names() order",
                call=str(node.call),
                expected=f"ref_names() order {expected}",
                received=f".using() order {wired}",
                fix=f".using({', '.join(map(repr, expected))}), or implement "
                "forward_named(x, refs) to receive them by name",
            )
        return
    missing = [r for r in expected if r not in wired]
    extra = [r for r in wired if r not in expected]
    if not wired:
        problem = f"{who} declares ref_names() {expected} but no .using() feeds it"
    elif missing and not extra:
        problem = f"{who} is missing references {missing} that its ref_names() declares"
    elif extra and not missing:
        problem = f"{who} is fed extra references {extra} that its ref_names() does not declare"
    else:
        problem = f"{who} is fed references {wired} but its ref_names() declares {expected}"
    hint = f".using({', '.join(map(repr, expected))})" if expected else "no .using() at all"
    if extra:
        hint += f"; check {extra} for typos"
    raise BuildError(
        problem,
        call=node.where(),
        expected=f"references {expected} (from ref_names())",
        received=f"references {wired} (from .using())",
        fix=f"wire exactly what it declares: {hint}",
    )


def check_protocol_method(
    node: Node,
    method: str,
    args: tuple[Any, ...],
    signature_text: str,
    module: Any = None,
    who: str | None = None,
) -> Callable[..., Any] | None:
    """If the node's module (or `module`, described by `who`) has `method`, it must accept
    `args`; return it bound, or None."""
    target = node.module if module is None else module
    bound = getattr(target, method, None)
    if not callable(bound):
        return None
    try:
        inspect.signature(bound).bind(*args)
    except TypeError:
        who = who or f"{node.id} ({describe_module(target)})"
        raise BuildError(
            f"{who} has a {method}() method that does not accept {signature_text}",
            call=str(node.call),
            expected=f"{method}{signature_text}: flowdl calls it as part of its module protocols "
            "(see flowdl.protocols)",
            received=f"{method}{inspect.signature(bound)}",
            fix=f"accept {signature_text} in {method}(), or rename the method if it means "
            "something else",
        ) from None
    except ValueError:
        pass  # the signature cannot be read (a builtin): trust it
    return cast("Callable[..., Any]", bound)


def check_node_module(node: Node) -> None:
    """What `Flow.build` checks on a node with a module: its references, its arity and
    its ``reset(batch_size, device)`` (and those of a construct's inner modules)."""
    check_ref_names(node)
    check_arity(node)
    check_protocol_method(node, "reset", (1, torch.device("cpu")), "(batch_size, device)")
    if isinstance(node.module, ControlNode):
        roles = {id(fn): role for role, fn in node.module.inner()}
        for fn in node.module.reset_targets():
            check_protocol_method(
                node,
                "reset",
                (1, torch.device("cpu")),
                "(batch_size, device)",
                module=fn,
                who=f"the {roles[id(fn)]} of {node.id} ({describe_module(fn)})",
            )


def check_state_consumer(read: Node, consumer: Node) -> None:
    """The consumer of forward-reference state may declare ``initial_state(ref_name, stream)``."""
    check_protocol_method(
        consumer, "initial_state", (read.state_tag, torch.zeros(1)), "(ref_name, stream)"
    )


def check_node(node: Node, record: FlowRecord) -> None:
    """Everything `build()` and the construct's call check on `node`'s module, on the
    module it holds now (after a replacement).

    Raises:
        BuildError: the module cannot work in this node.
    """
    check_node_module(node)
    construct = node.module
    if isinstance(construct, ControlNode):
        for role, fn in construct.inner()[1:]:  # the receiver is checked with its references
            check_stream_only(fn, f"the {role} of {node.id} ({describe_module(fn)})", node.call)
        if isinstance(construct, Gate):
            check_choices(node.call, construct.router, "router", len(construct.experts), "expert")
        elif isinstance(construct, Switch):
            n = len(construct.branches)
            check_choices(node.call, construct.selector, "selector", n, "branch")
            check_fixed_selector(node.call, construct.selector, n)
    for read in record.nodes:
        if read.kind is NodeKind.STATE_READ and read.consumer == node.index:
            check_state_consumer(read, node)


def check_stream_only(fn: Any, who: str, call: BuilderCall) -> None:
    """An inner callable fed the stream alone must accept a single input."""
    check_accepts(
        fn,
        1,
        "the stream",
        who=who,
        call=str(call),
        fix="give it a forward(x) taking the stream alone (references go to the "
        "loop body, router, selector or map body)",
    )


def check_choices(call: BuilderCall, fn: Any, role: str, n: int, what: str) -> None:
    """A built-in router or selector must choose among exactly `n` alternatives."""
    n_choices = getattr(fn, "n_choices", None)
    if isinstance(n_choices, int) and n_choices != n:
        suffix = "s" if what == "expert" else "es"
        raise BuildError(
            f"the {role} chooses among {plural(n_choices, what, suffix)}, but "
            f"{call.name} is given {n}",
            call=str(call),
            expected=f"a {role} for {plural(n, what, suffix)}",
            received=f"{describe_module(fn)} with n={n_choices}",
            fix=f"build the {role} with n={n}, or pass {n_choices} {what}{suffix}",
        )


def check_fixed_selector(call: BuilderCall, fn: Any, n: int) -> None:
    """`fl.FixedSelector(i)` must select one of the `n` branches."""
    if isinstance(fn, FixedSelector) and fn.index >= n:
        raise BuildError(
            f"fl.FixedSelector({fn.index}) selects a branch that does not exist",
            call=str(call),
            expected=f"an index in [0, {n}) ({plural(n, 'branch', 'es')})",
            received=f"index {fn.index}",
            fix=f"select one of the {n} branches, or add the missing branch",
        )
