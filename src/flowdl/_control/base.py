"""What loops, gates, switches and maps share: inner modules, references, the context."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from flowdl._context import Context, current_context
from flowdl._describe import describe_module, describe_value
from flowdl._errors import Cancelled, ControlFlowError, _render
from flowdl._replace.watch import Replaceable, live_owners


class Callables(Replaceable):
    """An ordered list of modules or plain callables (experts, branches).

    The modules are registered as children ``"0"``, ``"1"``, ... so their parameters
    belong to the graph; plain callables are only called. Replacing child ``"i"``
    (``add_module``, ``setattr``) replaces entry ``i``.

    Args:
        fns: the entries.
        role: what an entry is, for messages (``"expert"``, ``"branch"``).
    """

    def __init__(self, fns: Sequence[Callable[..., Any]], role: str = "entry") -> None:
        super().__init__()
        self.fns = tuple(fns)
        self.role = role
        for i, fn in enumerate(self.fns):
            if isinstance(fn, nn.Module):
                self.add_module(str(i), fn)
        self._start_watching()

    def __len__(self) -> int:
        return len(self.fns)

    def __getitem__(self, i: int) -> Callable[..., Any]:
        return self.fns[i]

    def __iter__(self) -> Iterator[Callable[..., Any]]:
        return iter(self.fns)

    # ----------------------------------------------------------- replacement

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
            if isinstance(owner, ControlNode)
        ]
        return what + (f" of {holders[0]}" if holders else "")


def not_a_module(where: str, before: Any, after: Any) -> TypeError:
    """`after` is not a module and cannot take the place of the module `before`."""
    received = (
        "None (removing it)"
        if after is None
        else (f"{type(after).__name__} {describe_module(after)}")
    )
    return TypeError(
        _render(
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


class ControlNode(Replaceable):
    """Base of the construct modules: one node of the graph running inner modules.

    The builder wires `Flow.using` references to one inner callable, the
    *receiver* (a loop's body, a gate's router, a switch's selector, a map's body);
    the graph tells the node their names when it is built (`bind_refs`).

    An inner module can be replaced like any submodule (``loop.body = m``,
    ``gate.experts.add_module("1", m)``): the construct refreshes what it caches
    from it, and the graph holding it checks it and recompiles its plan.
    """

    _roles: ClassVar[dict[str, str]] = {}
    """Attribute -> the role it plays, for the inner callables (``"body": "loop body"``)."""

    _lists: ClassVar[tuple[str, ...]] = ()
    """The attributes holding `Callables` (``experts``, ``branches``)."""

    def __init__(self) -> None:
        super().__init__()
        self._ref_names: tuple[str, ...] = ()
        self._named = False

    def bind_refs(self, names: Sequence[str], named: bool) -> None:
        """The tags of the references, in order; `named`: call ``forward_named``."""
        self._ref_names = tuple(names)
        self._named = named

    def inner(self) -> list[tuple[str, Callable[..., Any]]]:
        """``(role, callable)`` for every inner callable, the receiver first."""
        raise NotImplementedError

    @property
    def receiver(self) -> Callable[..., Any]:
        """The inner callable that receives the node's references."""
        return self.inner()[0][1]

    def rebuilt(self) -> ControlNode:
        """A new node of the same construct over the same inner modules.

        Each graph built from a flow gets its own, so what one graph observes
        (loop traces and counts) is not overwritten by another.
        """
        raise NotImplementedError

    # ----------------------------------------------------------- replacement

    def _check_value(self, name: str, before: Any, after: Any) -> None:
        if name in self._lists:
            if not isinstance(after, Callables) or len(after) != len(before):
                at = f"{self._holder()[0]}.{name}"
                raise TypeError(
                    _render(
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

    def call_receiver(self, x: Any, refs: tuple[Any, ...]) -> Any:
        """Call the receiver with the stream and the references, as a node would be."""
        if self._named and refs:
            return self.receiver.forward_named(  # type: ignore[attr-defined]
                x, dict(zip(self._ref_names, refs, strict=True))
            )
        return self.receiver(x, *refs)

    @staticmethod
    def context() -> Context | None:
        """The context of the running graph call, if any (none under ``torch.compile``)."""
        if torch.compiler.is_compiling():
            return None
        return current_context()

    def reset_targets(self) -> list[Callable[..., Any]]:
        """The inner callables whose ``reset(batch_size, device)`` this node forwards."""
        return []

    def reset(self, batch_size: int, device: torch.device) -> None:
        """Call ``reset(batch_size, device)`` on each `reset_targets` that has one, once each."""
        seen: set[int] = set()
        for fn in self.reset_targets():
            reset = getattr(fn, "reset", None)
            if callable(reset) and id(fn) not in seen:
                seen.add(id(fn))
                reset(batch_size, device)


def run_inner(
    role: str, fn: Callable[..., Any], where: str, call: Callable[..., Any], *args: Any
) -> Any:
    """``call(*args)``, which runs the inner callable `fn` (the `role` of the construct).

    A failure becomes a `ControlFlowError` naming `fn` and `where` it failed;
    cancellation passes through unchanged.
    """
    try:
        return call(*args)
    except Cancelled:
        raise
    except Exception as error:
        raise ControlFlowError(
            f"the {role} ({describe_module(fn)}) raised {type(error).__name__}"
            + (f" {where}" if where else ""),
            received=_first_line(error),
            fix=getattr(error, "fix", None)
            or "see the chained exception above for the inner failure",
        ) from error


def batch_size(value: Any, role: str, why: str) -> int:
    """The leading dimension of `value`, which must be a tensor with one."""
    if isinstance(value, Tensor) and value.dim() > 0:
        return int(value.shape[0])
    raise ControlFlowError(
        f"{why} needs the {role} to be a tensor with a batch dimension",
        expected="a tensor of shape [B, ...]",
        received=describe_value(value),
        fix="give the construct a batched tensor, or decide for the whole batch with a scalar",
    )


def _first_line(error: BaseException) -> str:
    """The error's first line; for a chain of wrapped errors, the root cause's too."""
    root = error
    while root.__cause__ is not None:
        root = root.__cause__
    lines = [_line(error)]
    if root is not error and str(root).strip().split("\n")[0] not in lines[0]:
        lines.append(f"root cause: {_line(root)}")
    return "\n".join(lines)


def _line(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text.splitlines()[0]}" if text else type(error).__name__
