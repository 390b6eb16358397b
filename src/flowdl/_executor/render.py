"""``repr(graph)``: the builder chain that made the graph, one call per line."""

from __future__ import annotations

import textwrap
from typing import Any

from torch import nn

from flowdl._describe import describe_module
from flowdl._ir.nodes import BuilderCall, ChainSource
from flowdl._ir.record import FlowRecord

__all__ = ["render_chain"]


_FINISHING = frozenset({"for_", "while_", "until", "batched", "each", "over", "slices"})
"""Calls that finish (or continue) the construct opened by the call before them."""


def _render_arg(value: Any) -> str:
    if isinstance(value, (str, int, float, bool, tuple, type(None))):
        return repr(value)
    if isinstance(value, nn.Module):
        return repr(value)  # nested graphs render their own chain
    if isinstance(value, ChainSource):  # an unbuilt flow passed as a module
        return _render_calls(value._chain_calls())
    return describe_module(value)


def _render_call(call: BuilderCall) -> str:
    parts = [_render_arg(a) for a in call.args]
    parts += [f"{k}={_render_arg(v)}" for k, v in call.kwargs]
    if any("\n" in p for p in parts):
        inner = ",\n".join(textwrap.indent(p, "  ") for p in parts)
        body = f"(\n{inner}\n)"
    else:
        body = f"({', '.join(parts)})"
    return ("fl.Flow" if call.method == "Flow" else f".{call.method}") + body


def render_chain(record: FlowRecord) -> str:
    """``Graph(fl.Flow(Linear(...)).through(ReLU()) ... .build())``, one call per line."""
    head = f"Graph[{record.label}]" if record.label is not None else "Graph"
    chain = _render_calls(record.calls) + "\n.build()"
    return f"{head}(\n{textwrap.indent(chain, '  ')}\n)"


def _render_calls(calls: list[BuilderCall]) -> str:
    """The chain of `calls`, one call per line (a construct's finishing call on its line)."""
    lines: list[str] = []
    for call in calls:
        text = _render_call(call)
        if call.method in _FINISHING and lines:  # .loop(body).for_(3) on one line
            lines[-1] += text
        else:
            lines.append(text)
    return "\n".join(lines)
