"""What a refused replacement says: what was replaced, where, what was expected, the fix."""

from __future__ import annotations

from typing import Any

from flowdl._describe import describe_module
from flowdl._errors import BuildError, render_message

__all__ = ["not_a_module", "replacement_error"]


def not_a_module(where: str, before: Any, after: Any) -> TypeError:
    """`after` is not a module and cannot take the place of the module `before`."""
    received = (
        "None (removing it)"
        if after is None
        else (f"{type(after).__name__} {describe_module(after)}")
    )
    return TypeError(
        render_message(
            f"{where} holds {describe_module(before)}, which the graph runs; it can be "
            "replaced only by another nn.Module",
            [
                ("expected", "an nn.Module taking the same inputs"),
                ("received", received),
                (
                    "fix",
                    "wrap a plain function in a module (an nn.Module whose forward calls it), "
                    "build an unbuilt fl.Flow first (.build()), or rebuild the graph with "
                    "fl.Flow(...) to drop the node",
                ),
            ],
        )
    )


def replacement_error(child: str, before: Any, after: Any, error: BuildError) -> BuildError:
    """`error` (from a check of the new module) told as the replacement that caused it.

    Args:
        child: how the replaced child is named (``'body' of Loop(...)``).
    """
    old = describe_module(before) if before is not None else "nothing"
    return BuildError(
        f"cannot replace {child} ({old}) with {describe_module(after)}: {error.problem}",
        call=error.call,
        expected=error.expected,
        received=error.received,
        fix=(f"{error.fix}; " if error.fix else "")
        + "the graph was left as it was, running the module it had",
    )
