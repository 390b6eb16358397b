"""The exceptions flowdl raises.

Every message says what went wrong, what was expected, what was received, how to
fix it, and where: the builder call for a `BuildError`, the node for a `GraphError`.
"""

from __future__ import annotations

__all__ = ["BuildError", "Cancelled", "ControlFlowError", "DeadlineExceeded", "GraphError"]


def _render(problem: str, fields: list[tuple[str, str | None]]) -> str:
    lines = [problem]
    width = max((len(name) for name, value in fields if value), default=0)
    for name, value in fields:
        if value:
            pad = " " * (width - len(name))
            body = value.replace("\n", "\n" + " " * (width + 4))
            lines.append(f"  {name}:{pad} {body}")
    return "\n".join(lines)


class BuildError(ValueError):
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
        self.problem = problem
        self.call = call
        self.expected = expected
        self.received = received
        self.fix = fix
        super().__init__(
            _render(
                problem,
                [("at", call), ("expected", expected), ("received", received), ("fix", fix)],
            )
        )


class GraphError(RuntimeError):
    """A node of a built graph failed during forward, or the graph was called wrongly.

    The original exception is chained (``__cause__``).

    Attributes:
        node_id: the failing node's id (e.g. ``"Linear_2"``), or ``None`` when the
            graph itself was called wrongly.
        tags: the node's tags.
        call: the builder call that created the node.
        inputs: a description of each value the node received.
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
        self.problem = problem
        self.node_id = node_id
        self.tags = tags
        self.call = call
        self.inputs = inputs
        self.expected = expected
        self.received = received
        self.fix = fix
        node = None
        if node_id is not None:
            node = node_id + (f" (tags: {', '.join(tags)})" if tags else "")
        received_lines = received
        if inputs:
            received_lines = "\n".join(f"input {i}: {d}" for i, d in enumerate(inputs))
        super().__init__(
            _render(
                problem,
                [
                    ("node", node),
                    ("built by", call),
                    ("expected", expected),
                    ("received", received_lines),
                    ("fix", fix),
                ],
            )
        )


class ControlFlowError(RuntimeError):
    """A loop, gate, switch or map could not go on: a bad routing or halting decision,
    or a failure of one of its inner modules (chained).

    Raised inside a graph call; the graph re-raises it as a `GraphError` naming the
    node, with the same problem, expectation and fix.
    """

    def __init__(
        self,
        problem: str,
        *,
        expected: str | None = None,
        received: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem
        self.expected = expected
        self.received = received
        self.fix = fix
        super().__init__(
            _render(problem, [("expected", expected), ("received", received), ("fix", fix)])
        )


class Cancelled(Exception):
    """A forward call was stopped through its `fl.Context` (``ctx.cancel()``).

    The graph is left usable: forward-reference state is only written when a call
    completes, so a cancelled call leaves the state of the previous call in place.
    `DeadlineExceeded` is a subclass, so ``except fl.Cancelled`` catches both.
    """


class DeadlineExceeded(Cancelled, TimeoutError):
    """A forward call ran past the timeout or deadline of its `fl.Context`.

    Also a `TimeoutError`, so code that already handles timeouts catches it.
    """
