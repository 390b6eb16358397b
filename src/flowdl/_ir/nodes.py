"""What the builder records: one `Node` per vertex of the graph, and the calls that made them.

The records are shared by the planner (which turns them into an executable plan),
by error messages (which name the node and the builder call) and by drawings.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from flowdl._describe import describe_module


class NodeKind(enum.Enum):
    """What a node does when the graph runs."""

    INPUT = "input"
    """A graph input: ``x`` (from `Flow`) or a name given to `Flow.input`."""
    MODULE = "module"
    """A module or callable applied to its inputs (stream first, then references)."""
    RESIDUAL = "residual"
    """The addition of `Flow.also`: ``stream + module(stream)``."""
    MERGE = "merge"
    """The combination of the branches of `Flow.split` by `Flow.merge`."""
    STATE_READ = "state_read"
    """The previous call's value of a tag (a forward reference)."""


@dataclass(frozen=True, eq=False)
class BuilderCall:
    """One call of the fluent chain, kept to name it in messages and in ``repr(graph)``.

    Attributes:
        index: 1-based position in the chain (``fl.Flow(...)`` is call 1).
        method: the method name (``"Flow"``, ``"through"``, ...).
        args: the positional arguments as given.
        kwargs: the keyword arguments as given.
    """

    index: int
    method: str
    args: tuple[Any, ...] = ()
    kwargs: tuple[tuple[str, Any], ...] = ()

    @property
    def name(self) -> str:
        """The method as written without arguments: ``.through()`` or ``fl.Flow()``."""
        return "fl.Flow()" if self.method == "Flow" else f".{self.method}()"

    @property
    def text(self) -> str:
        """The call as written: ``.through(Linear(in_features=2, out_features=4, bias=True))``."""
        parts = [_describe_arg(a) for a in self.args]
        parts += [f"{k}={_describe_arg(v)}" for k, v in self.kwargs]
        inner = ", ".join(parts)
        return f"fl.Flow({inner})" if self.method == "Flow" else f".{self.method}({inner})"

    def __str__(self) -> str:
        return f"{self.text} (builder call #{self.index})"


class ChainSource:
    """Something that stands for a chain of builder calls: an unbuilt `fl.Flow` given
    as a module, or what replaces it in a graph's calls once its modules change.

    ``repr(graph)`` renders such an argument as its chain (`_chain_calls`).
    """

    def _chain_calls(self) -> list[BuilderCall]:
        """The builder calls of the chain, in order."""
        raise NotImplementedError


def _describe_arg(value: Any) -> str:
    if isinstance(value, str):
        return repr(value)
    if isinstance(value, (int, float, bool, type(None), tuple)):
        return repr(value)
    return describe_module(value)


@dataclass(eq=False)
class Node:
    """One vertex of the graph.

    Attributes:
        index: creation order; the key of the node in the builder's list.
        id: a unique, readable name: ``<TypeName>_<k>`` with one counter per type
            (``Linear_0``, ``Linear_1``, ``add_0``, ``input_aux``).
        kind: what the node does.
        call: the builder call that created it.
        module: the module or callable it applies (``None`` for inputs and state reads).
        inputs: producers of its inputs, in port order: the stream (or the
            branches of a merge) first, then one per reference.
        n_stream: how many leading inputs are stream values.
        ref_names: one tag name per reference input.
        ref_calls: the `using` call that wired each reference.
        tags: the tags naming this node's output.
        input_name: for inputs, the graph input's name.
        state_tag: for state reads, the tag whose previous value is read.
        like: for state reads, the producer whose value shapes the zeros of a
            first call (the consumer's stream).
        consumer: for state reads, the node that receives the value.
        ref_target: for a loop, gate, switch or map, the inner callable its
            references go to (body, router, selector); see `receiver`.
    """

    index: int
    id: str
    kind: NodeKind
    call: BuilderCall
    module: Any = None
    inputs: list[int] = field(default_factory=list)
    n_stream: int = 1
    ref_names: list[str] = field(default_factory=list)
    ref_calls: list[BuilderCall] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    input_name: str | None = None
    state_tag: str | None = None
    like: int | None = None
    consumer: int | None = None
    ref_target: Any = None

    @property
    def receiver(self) -> Any:
        """What receives the node's references: its module, or a construct's inner callable."""
        return self.module if self.ref_target is None else self.ref_target

    @property
    def dependencies(self) -> list[int]:
        """Producers this node must wait for: its inputs, and for a state read its `like`."""
        if self.like is not None:
            return [*self.inputs, self.like]
        return self.inputs

    def where(self) -> str:
        """The builder calls that shaped this node: its own, then those wiring its references."""
        extra = []
        for call in self.ref_calls:
            if call not in extra:
                extra.append(call)
        return "; ".join([str(self.call), *(f"references from {c}" for c in extra)])

    def describe(self) -> str:
        """``Linear_0 (tags: hidden)``."""
        return self.id + (f" (tags: {', '.join(self.tags)})" if self.tags else "")
