"""The exceptions flowdl raises, and how their messages are written.

Every flowdl error is a `FlowdlError`: a one-line *problem*, then labelled fields in
a fixed order (what was expected, what was received, how to fix it, and where: the
builder call for a `BuildError`, the node for a `GraphError`). Each error class
also derives from the built-in exception that says what kind of mistake it is
(`ValueError`, `RuntimeError`, `KeyError`...), so ``except ValueError`` keeps
working. Messages that are not exceptions of their own (a `TypeError` about an
argument, say) are written with the same `render_message`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch.utils.checkpoint

__all__ = [
    "BuildError",
    "Cancelled",
    "ControlFlowError",
    "DeadlineExceeded",
    "FlowdlError",
    "GraphError",
    "passes_through",
    "render_message",
]

Field = tuple[str, "str | None"]
"""A labelled line of a message: ``("expected", "a tensor")``; empty values are left out."""


def render_message(problem: str, fields: Sequence[Field]) -> str:
    """`problem`, then one aligned ``  label: value`` line per field that has a value.

    Example:
        >>> print(render_message("bad input", [("expected", "a tensor"), ("fix", None),
        ...                                    ("received", "a list\\nof 3 items")]))
        bad input
          expected: a tensor
          received: a list
                    of 3 items
    """
    lines = [problem]
    width = max((len(name) for name, value in fields if value), default=0)
    for name, value in fields:
        if value:
            pad = " " * (width - len(name))
            body = value.replace("\n", "\n" + " " * (width + 4))
            lines.append(f"  {name}:{pad} {body}")
    return "\n".join(lines)


class FlowdlError(Exception):
    """The base of every flowdl error: a problem, then ordered fields.

    The message is rendered from the attributes when it is shown, so a subclass
    only says which fields it has (`fields`), in which order and under which label.

    Attributes:
        problem: one line saying what went wrong.
        expected: what was expected, or ``None``.
        received: what was received, or ``None``.
        fix: how to fix it, or ``None``.
    """

    def __init__(
        self,
        problem: str,
        *,
        expected: str | None = None,
        received: str | None = None,
        fix: str | None = None,
    ) -> None:
        super().__init__(problem)
        self.problem = problem
        self.expected = expected
        self.received = received
        self.fix = fix

    def fields(self) -> list[Field]:
        """The labelled lines after the problem, in order (subclasses add theirs)."""
        return [("expected", self.expected), ("received", self.received), ("fix", self.fix)]

    def __str__(self) -> str:
        return render_message(self.problem, self.fields())


class BuildError(FlowdlError, ValueError):
    """A graph could not be built because a builder call was used wrongly.

    Raised by the builder call that made the mistake when it can be seen there, and
    by `Flow.build()` for what can only be checked on the whole graph (open branches,
    unresolved references, module contracts).

    Attributes:
        problem: one line saying what went wrong.
        call: the builder call at fault, as written (e.g. ``".through(Linear(...))"``
            with its position in the chain), or ``None``.
        expected: what the builder expected.
        received: what it received.
        fix: how to fix it.

    Example:
        >>> import torch, flowdl as fl
        >>> try:
        ...     fl.Flow(torch.nn.Identity()).split(torch.sin, torch.cos).through(torch.nn.Tanh())
        ... except fl.BuildError as error:
        ...     print(error.call, isinstance(error, ValueError))
        .through(Tanh()) (builder call #3) True
    """

    def __init__(
        self,
        problem: str,
        *,
        call: str | None = None,
        expected: str | None = None,
        received: str | None = None,
        fix: str | None = None,
    ) -> None:
        super().__init__(problem, expected=expected, received=received, fix=fix)
        self.call = call

    def fields(self) -> list[Field]:
        return [("at", self.call), *super().fields()]


class GraphError(FlowdlError, RuntimeError):
    """A node of a built graph failed during forward, or the graph was called wrongly.

    The original exception is chained (``__cause__``).

    Attributes:
        node_id: the failing node's id (e.g. ``"Linear_2"``), or ``None`` when the
            graph itself was called wrongly.
        tags: the node's tags.
        call: the builder call that created the node.
        inputs: a description of each value the node received.

    Example:
        >>> import torch, flowdl as fl
        >>> g = fl.Flow(torch.nn.Linear(2, 3)).through(torch.nn.Linear(4, 1)).build()
        >>> try:
        ...     g(torch.randn(5, 2))
        ... except fl.GraphError as error:
        ...     print(error.node_id, type(error.__cause__).__name__)
        Linear_1 RuntimeError
    """

    def __init__(
        self,
        problem: str,
        *,
        node_id: str | None = None,
        tags: tuple[str, ...] = (),
        call: str | None = None,
        inputs: tuple[str, ...] = (),
        expected: str | None = None,
        received: str | None = None,
        fix: str | None = None,
    ) -> None:
        super().__init__(problem, expected=expected, received=received, fix=fix)
        self.node_id = node_id
        self.tags = tags
        self.call = call
        self.inputs = inputs

    def fields(self) -> list[Field]:
        node = None
        if self.node_id is not None:
            node = self.node_id + (f" (tags: {', '.join(self.tags)})" if self.tags else "")
        received = self.received
        if self.inputs:
            received = "\n".join(f"input {i}: {d}" for i, d in enumerate(self.inputs))
        return [
            ("node", node),
            ("built by", self.call),
            ("expected", self.expected),
            ("received", received),
            ("fix", self.fix),
        ]


class ControlFlowError(FlowdlError, RuntimeError):
    """A loop, gate, switch or map could not go on: a bad routing or halting decision,
    or a failure of one of its inner modules (chained).

    Raised inside a graph call; the graph re-raises it as a `GraphError` naming the
    node, with the same problem, expectation and fix.
    """


class Cancelled(FlowdlError):
    """A forward call was stopped through its `fl.Context` (``ctx.cancel()``).

    The graph is left usable: forward-reference state is only written when a call
    completes, so a cancelled call leaves the state of the previous call in place.
    `DeadlineExceeded` is a subclass, so ``except fl.Cancelled`` catches both.

    Example:
        >>> import torch, flowdl as fl
        >>> g = fl.Flow(torch.nn.Identity()).build()
        >>> ctx = fl.Context()
        >>> ctx.cancel()
        >>> try:
        ...     g(torch.ones(1), ctx=ctx)
        ... except fl.Cancelled as error:
        ...     print(error.problem)
        the forward call was cancelled (ctx.cancel() was called)
    """


class DeadlineExceeded(Cancelled, TimeoutError):
    """A forward call ran past the timeout or deadline of its `fl.Context`.

    Also a `TimeoutError`, so code that already handles timeouts catches it.

    Example:
        >>> import torch, flowdl as fl
        >>> g = fl.Flow(torch.nn.Identity()).loop(torch.tanh).for_(3).build()
        >>> try:
        ...     g(torch.ones(1), ctx=fl.Context(timeout=0.0))
        ... except TimeoutError as error:
        ...     print(type(error).__name__)
        DeadlineExceeded
    """


def _stop_recomputation() -> tuple[type[BaseException], ...]:
    """PyTorch's signal that ends a checkpoint recomputation early (private in torch)."""
    signal = getattr(torch.utils.checkpoint, "_StopRecomputationError", None)
    return (signal,) if isinstance(signal, type) else ()


PASS_THROUGH: tuple[type[BaseException], ...] = (Cancelled, *_stop_recomputation())
"""Exceptions that leave a graph call unchanged instead of becoming a `GraphError`:
cancellation, and the signal `torch.utils.checkpoint` raises inside a recomputation
to stop it once it has what it needs (wrapping it would break checkpointing)."""


def passes_through(error: Exception) -> bool:
    """Whether `error` leaves a node or an inner module unwrapped: one of `PASS_THROUGH`
    (anything that is not an `Exception`, such as ``KeyboardInterrupt``, does too)."""
    return isinstance(error, PASS_THROUGH)
