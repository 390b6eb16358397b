"""Counting parameters the way `Graph.parameters()` does: each tensor once.

A drawing or summary visits the parts of a graph in order (nodes in creation
order, the inner modules of a construct, the nodes of a nested graph); the first
part that holds a tensor counts it. A later part holding the same tensor (the
same module used twice, or a weight tied to another module's) counts it as
*shared* and names the part that counted it; a module seen before is marked as
the *same module*.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn


@dataclass(frozen=True)
class ParameterCount:
    """The parameters of one part of a drawing.

    Attributes:
        total: scalars in the tensors counted here (first seen at this part).
        trainable: of those, the scalars of tensors that require grad.
        sharing: ``(part, scalars)`` for the tensors this part uses that an earlier
            part counted, by that part, in order.
        same_module_as: the part that had this very module before, if any.
    """

    total: int = 0
    trainable: int = 0
    sharing: tuple[tuple[str, int], ...] = ()
    same_module_as: str | None = None

    @property
    def shared(self) -> int:
        """Scalars this part uses but another part counted."""
        return sum(n for _, n in self.sharing)

    @property
    def shared_with(self) -> tuple[str, ...]:
        """The parts that counted what this part shares."""
        return tuple(name for name, _ in self.sharing)

    def __add__(self, other: ParameterCount) -> ParameterCount:
        merged: dict[str, int] = {}
        for name, n in (*self.sharing, *other.sharing):
            merged[name] = merged.get(name, 0) + n
        return ParameterCount(
            self.total + other.total, self.trainable + other.trainable, tuple(merged.items())
        )

    def outside(self, name: str, same_module_as: str | None = None) -> ParameterCount:
        """This count as that of the composite part `name`: sharing among its own inner
        parts (two experts that are one module) is inside its total already."""
        return ParameterCount(
            self.total,
            self.trainable,
            tuple((w, n) for w, n in self.sharing if not _within(w, name)),
            same_module_as,
        )


def _within(part: str, composite: str) -> bool:
    return part == composite or part.startswith(composite + ".")


class ParameterCounter:
    """Remembers which part counted each tensor and which part had each module."""

    def __init__(self) -> None:
        self._owners: dict[int, str] = {}
        self._modules: dict[int, str] = {}
        self._alive: list[Any] = []  # ids stay unique while the objects are held

    def first_use(self, name: str, fn: Any) -> str | None:
        """Note that part `name` uses module `fn`; the part that had it before, if any."""
        if not isinstance(fn, nn.Module):
            return None
        earlier = self._modules.get(id(fn))
        if earlier is None:
            self._modules[id(fn)] = name
            self._alive.append(fn)
        return None if earlier == name else earlier

    def take(self, name: str, fn: Any, extra: Iterable[Tensor] = ()) -> ParameterCount:
        """Count the parameters of `fn` (a module; callables have none) and `extra`."""
        same = self.first_use(name, fn)
        tensors: list[Tensor] = list(fn.parameters()) if isinstance(fn, nn.Module) else []
        tensors += extra
        total = trainable = 0
        sharing: dict[str, int] = {}
        seen_here: set[int] = set()
        for tensor in tensors:
            if id(tensor) in seen_here:
                continue
            seen_here.add(id(tensor))
            owner = self._owners.get(id(tensor))
            if owner is None:
                self._owners[id(tensor)] = name
                self._alive.append(tensor)
                total += tensor.numel()
                trainable += tensor.numel() if tensor.requires_grad else 0
            else:
                sharing[owner] = sharing.get(owner, 0) + tensor.numel()
        return ParameterCount(total, trainable, tuple(sharing.items()), same)

    def leftover(self, name: str, fn: Any) -> ParameterCount:
        """Count the tensors of `fn` that no part has counted yet (after its inner parts)."""
        if not isinstance(fn, nn.Module):
            return ParameterCount()
        fresh = [t for t in fn.parameters() if id(t) not in self._owners]
        return self.take(name, None, fresh)


def compact_count(n: int) -> str:
    """``910``, ``1.2K``, ``3.4M``: a parameter count for a small label.

    Example:
        >>> [compact_count(n) for n in (910, 1_234, 12_345_678)]
        ['910', '1.2K', '12.3M']
    """
    if n >= 1_000_000:
        return f"{n / 1_000_000:.1f}M"
    if n >= 1_000:
        return f"{n / 1_000:.1f}K"
    return str(n)
