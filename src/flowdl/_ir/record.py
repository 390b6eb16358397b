"""`FlowRecord`: everything `Flow.build()` hands to the planner, frozen at build time."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import Tensor

from flowdl._ir.nodes import BuilderCall, Node

StateInit = Tensor | tuple[int, ...] | Callable[[Tensor], Tensor]
"""The first-call value of state: a tensor, a per-sample shape, or ``init(stream) -> Tensor``."""


@dataclass
class FlowRecord:
    """A finished chain: its nodes, calls, inputs, output, tags and state.

    Attributes:
        nodes: every node, in creation order (``nodes[i].index == i``).
        calls: every builder call, in order.
        inputs: the input nodes, in the order the graph is called with.
        output: the node whose value the graph returns.
        tags: tag -> node.
        groups: tag group -> member tags.
        state_writers: for each tag read before it is defined, the node whose
            output becomes the state for the next call.
        state_inits: declared first-call values of state, by tag.
        label: the graph's label, if any.
        per_sample_inputs: auxiliary inputs declared per-sample (``.input(name,
            per_sample=True)``): their rows are the samples of the stream.
        shared_tags: tags declared shared (``.tag(name, shared=True)``): the same
            value for every sample, though computed from the stream.
    """

    nodes: list[Node]
    calls: list[BuilderCall]
    inputs: list[int]
    output: int
    tags: dict[str, int]
    groups: dict[str, tuple[str, ...]]
    state_writers: dict[str, int]
    state_inits: dict[str, StateInit]
    label: str | None
    per_sample_inputs: frozenset[str] = frozenset()
    shared_tags: frozenset[str] = frozenset()
