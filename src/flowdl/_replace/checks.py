"""What is checked when a node's module, or an inner module of a construct, is replaced.

The checks `Flow.build()` and the construct's builder call ran on the old module
run again on the new one: the references it is fed, how many inputs it takes, its
``reset()`` and ``initial_state()`` protocols, and for a construct the inner
callables fed the stream alone and the number of choices of a built-in router or
selector.
"""

from __future__ import annotations

from flowdl._builder import checks
from flowdl._builder.control import check_choices, check_fixed_selector, check_stream_only
from flowdl._builder.ir import Node, NodeKind
from flowdl._builder.record import FlowRecord
from flowdl._control.base import ControlNode
from flowdl._control.gate import Gate
from flowdl._control.switch import Switch
from flowdl._describe import describe_module

__all__ = ["check_node"]


def check_node(node: Node, record: FlowRecord) -> None:
    """Everything `build()` checks on `node`'s module, on the module it holds now.

    Raises:
        BuildError: the module cannot work in this node.
    """
    checks.check_node_module(node)
    if isinstance(node.module, ControlNode):
        _check_construct(node, node.module)
    for read in record.nodes:
        if read.kind is NodeKind.STATE_READ and read.consumer == node.index:
            checks.check_state_consumer(read, node)


def _check_construct(node: Node, construct: ControlNode) -> None:
    for role, fn in construct.inner()[1:]:  # the receiver is checked with its references
        check_stream_only(fn, f"the {role} of {node.id} ({describe_module(fn)})", node.call)
    if isinstance(construct, Gate):
        check_choices(node.call, construct.router, "router", len(construct.experts), "expert")
    elif isinstance(construct, Switch):
        n = len(construct.branches)
        check_choices(node.call, construct.selector, "selector", n, "branch")
        check_fixed_selector(node.call, construct.selector, n)
