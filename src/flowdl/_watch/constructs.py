"""How the construct modules follow a replaced inner module.

A construct (`ControlNode`: loop, gate, switch, map) holds its inner callables
under role attributes (``body``, ``cond``, ``router``, ``selector``), and its
experts or branches in a `Callables` list whose children are ``"0"``, ``"1"``,
.... These hooks check what takes a role's place and re-point the list's entries;
each construct's own ``_refresh`` re-derives what it caches (a loop's body
function, whether it keeps per-batch state, its tracer; a gate's sparsity), and
the graph holding the construct checks the new module against the node.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from torch import nn

from flowdl._describe import describe_module
from flowdl._errors import render_message
from flowdl._watch.messages import not_a_module
from flowdl._watch.watch import Replaceable, live_owners

__all__ = ["ConstructReplacement", "EntriesReplacement"]


class ConstructReplacement(Replaceable):
    """Replacing the inner modules of a construct; `ControlNode` inherits it."""

    _roles: ClassVar[dict[str, str]] = {}
    """Attribute -> the role it plays, for the inner callables (``"body": "loop body"``)."""

    _lists: ClassVar[tuple[str, ...]] = ()
    """The attributes holding `Callables` (``experts``, ``branches``)."""

    def _check_value(self, name: str, before: Any, after: Any) -> None:
        if name in self._lists:
            if not isinstance(after, type(before)) or len(after) != len(before):
                at = f"{self._holder()[0]}.{name}"
                raise TypeError(
                    render_message(
                        f"the {name} of {self._describe_holder()} cannot be replaced as a whole",
                        [
                            ("expected", f"the same {len(before)} {name}, replaced one by one"),
                            ("received", describe_module(after)),
                            (
                                "fix",
                                f"replace one entry: setattr({at}, '1', module) or "
                                f"{at}.add_module('1', module); to change how many "
                                f"{name} there are, rebuild the graph",
                            ),
                        ],
                    )
                )
        elif (
            name in self._roles
            and not callable(after)
            and (after is not None or not self._optional(name))
        ):
            raise not_a_module(self._describe_child(name), before, after)

    def _optional(self, name: str) -> bool:
        """Whether the inner callable `name` may be ``None`` (a ``for_`` loop's condition)."""
        return False

    def _describe_child(self, name: str) -> str:
        role = self._roles.get(name)
        what = repr(name) if role is None else f"the {role}"
        if role is not None and role != name:
            what += f" ({name!r})"
        return f"{what} of {self._describe_holder()}"

    def _describe_holder(self) -> str:
        """``loop_0 in Graph(3 nodes)``: the node this construct is, in the graph holding it."""
        node_id, graph = self._holder()
        return f"{node_id} in {describe_module(graph)}" if graph is not None else node_id

    def _holder(self) -> tuple[str, Any]:
        """The id of the node this construct is, and the graph holding it (or ``None``)."""
        for owner in live_owners(self):
            record = getattr(owner, "_record", None)
            for node in record.nodes if record is not None else ():
                if node.module is self:
                    return node.id, owner
        return describe_module(self), None


class EntriesReplacement(Replaceable):
    """Replacing the entries of a `Callables` list (children ``"0"``, ``"1"``, ...)."""

    fns: tuple[Callable[..., Any], ...]
    role: str

    def _index(self, name: str) -> int | None:
        if name.isdigit() and str(int(name)) == name and int(name) < len(self.fns):
            return int(name)
        return None

    def _plain_value(self, name: str) -> Any:
        i = self._index(name)
        return self.fns[i] if i is not None else super()._plain_value(name)

    def _check_value(self, name: str, before: Any, after: Any) -> None:
        i = self._index(name)
        if i is not None and not isinstance(after, nn.Module):
            raise not_a_module(self._describe_child(name), before, after)

    def _rebind(self, name: str, before: Any, after: Any) -> Callable[[], None]:
        i = self._index(name)
        old = self.fns
        if i is not None:
            self.fns = (*old[:i], after, *old[i + 1 :])

        def undo() -> None:
            self.fns = old

        return undo

    def _describe_child(self, name: str) -> str:
        i = self._index(name)
        what = f"{self.role} {i}" if i is not None else repr(name)
        holders = [
            owner._describe_holder()
            for owner in live_owners(self)
            if isinstance(owner, ConstructReplacement)
        ]
        return what + (f" of {holders[0]}" if holders else "")
