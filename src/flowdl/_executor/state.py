"""Forward-reference state: a tag's value carried from one call to the next."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from flowdl._describe import describe_value
from flowdl._ir.record import StateInit

WANTED = object()
"""`StateCell.first` while a loop waits for the initial value read in an iteration."""


class StateCell:
    """Holds the value a tag had at the end of the last completed call (or ``None``).

    ``first``: while a per-sample halting loop runs an iteration of its body, it
    sets ``first`` to `WANTED`; a consumer reading the initial value in place of
    state (no value yet) leaves it there, and the loop gives it to the samples
    that halted before the body ran, so that they keep their initial state as they
    would alone. Otherwise ``None``.
    """

    __slots__ = ("first", "tag", "value")

    def __init__(self, tag: str) -> None:
        self.tag = tag
        self.value: Any = None
        self.first: Any = None

    def __getstate__(self) -> tuple[str, Any]:
        # Copies and pickles carry the value, not its autograd history.
        return self.tag, detach(self.value)

    def __setstate__(self, state: tuple[str, Any]) -> None:
        self.tag, self.value = state
        self.first = None

    def __repr__(self) -> str:
        return f"StateCell({self.tag!r}, {describe_value(self.value)})"


class StateRead:
    """Gives one consumer the state of a tag; on a first call, its initial value.

    The initial value comes from, in order: the tag's declared ``init`` (a tensor,
    a per-sample shape, or a callable), the consumer's ``initial_state(ref, stream)``
    method (which may return ``None`` to mean "no state yet"), or zeros shaped like
    the consumer's stream.
    """

    __slots__ = ("cell", "consumer_initial_state", "init")

    def __init__(
        self,
        cell: StateCell,
        init: StateInit | None,
        consumer_initial_state: Callable[[str, Any], Any] | None,
    ) -> None:
        self.cell = cell
        self.init = init
        self.consumer_initial_state = consumer_initial_state

    def __call__(self, like: Any) -> Any:
        value = self.cell.value
        if value is not None:
            return value
        first = self.initial(like)
        if self.cell.first is WANTED:  # a per-sample halting loop asks (see StateCell)
            self.cell.first = first
        return first

    def initial(self, like: Any) -> Any:
        """The value of a first call, given the consumer's stream `like`."""
        init = self.init
        if init is None:
            if self.consumer_initial_state is not None:
                return self.consumer_initial_state(self.cell.tag, like)
            return torch.zeros_like(like)
        if isinstance(init, Tensor):
            return init
        if isinstance(init, tuple):
            return like.new_zeros((like.shape[0], *init))
        return init(like)


def map_tensors(fn: Callable[[Tensor], Tensor], value: Any) -> Any:
    """Apply `fn` to every tensor in `value` (a tensor, or tuples, lists, dicts of them)."""
    if isinstance(value, Tensor):
        return fn(value)
    if isinstance(value, (tuple, list)):
        return type(value)(map_tensors(fn, v) for v in value)
    if isinstance(value, dict):
        return {k: map_tensors(fn, v) for k, v in value.items()}
    return value


def detach(value: Any) -> Any:
    """`value` with every tensor detached from the autograd graph."""
    if isinstance(value, Tensor):
        return value.detach()
    return map_tensors(Tensor.detach, value)
