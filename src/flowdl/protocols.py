"""Optional methods a node module can have, and when the graph calls them.

flowdl duck-types them: a module only needs the method. The `typing.Protocol`
classes below document the signatures and let type checkers and
``isinstance(module, fl.protocols.Resettable)`` check them.

- `Resettable`, ``reset(batch_size, device)``: called at the start of every forward
  of the graph holding the node, once per module.
- `Traced`, ``trace() -> Tensor``: called on loop bodies, before the first
  iteration and after each one (collected by ``g.traces(tag)``).
- `NamedInputModule`, ``forward_named(x, refs)``: called instead of ``forward``
  when the node has ``.using()`` references; ``refs`` maps tag -> value.
- `RefValidator`, ``ref_names() -> list[str]``: called once, at ``build()``; the
  node must be fed exactly these references.
- `Detachable`, ``detach_state()``: called by ``g.detach_state()`` on every
  submodule that has it.
- `InitialState`, ``initial_state(ref, stream)``: called on a first call (or after
  ``reset_state()``) for each state reference the node reads whose tag declares
  no ``init=``; it returns the value to use, or ``None`` to pass ``None`` ("no
  state yet").

Example:
    A module that reads a recurrent state by name and declares both the name it
    needs and the state's first value:

    >>> import torch, flowdl as fl
    >>> from torch import nn
    >>> class Accumulate(nn.Module):
    ...     def ref_names(self):
    ...         return ["total"]
    ...     def forward_named(self, x, refs):
    ...         return x if refs["total"] is None else x + refs["total"]
    ...     def initial_state(self, ref, stream):
    ...         return None  # "no state yet" on the first call
    >>> g = fl.Flow(nn.Identity()).through(Accumulate()).using("total").tag("total").build()
    >>> [g(torch.tensor([1.0])).item() for _ in range(3)]
    [1.0, 2.0, 3.0]
    >>> isinstance(Accumulate(), fl.protocols.NamedInputModule)
    True
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch
from torch import Tensor

__all__ = [
    "Detachable",
    "InitialState",
    "NamedInputModule",
    "RefValidator",
    "Resettable",
    "Traced",
]


@runtime_checkable
class Resettable(Protocol):
    """Reset per-call state before each forward, knowing the batch size and device.

    Example:
        >>> import torch, flowdl as fl
        >>> class Count(torch.nn.Module):
        ...     def reset(self, batch_size, device):
        ...         self.n = torch.zeros(batch_size, 1, device=device)
        ...     def forward(self, x):
        ...         self.n = self.n + 1
        ...         return x + self.n
        >>> g = fl.Flow(torch.nn.Identity()).loop(Count()).for_(3).build()
        >>> g(torch.zeros(2, 1)).tolist(), g(torch.zeros(2, 1)).tolist()   # 1 + 2 + 3, again
        ([[6.0], [6.0]], [[6.0], [6.0]])
    """

    def reset(self, batch_size: int, device: torch.device) -> None:
        """Called at the start of every forward of the graph holding this module.

        Args:
            batch_size: the size of dimension 0 of the call's first input.
            device: the device of the call's first input.
        """


@runtime_checkable
class Traced(Protocol):
    """A loop body that reports a value after each iteration.

    Example:
        >>> import torch, flowdl as fl
        >>> class Halve(torch.nn.Module):
        ...     def reset(self, batch_size, device):
        ...         self.size = torch.ones(batch_size)
        ...     def forward(self, x):
        ...         self.size = self.size / 2
        ...         return x / 2
        ...     def trace(self):
        ...         return self.size
        >>> g = fl.Flow(torch.nn.Identity()).loop(Halve()).for_(2).tag("halve").build()
        >>> _ = g(torch.ones(1, 1))
        >>> [t.item() for t in g.traces("halve")]
        [1.0, 0.5, 0.25]
    """

    def trace(self) -> Tensor:
        """Called before the first iteration and after each iteration of a loop.

        Returns:
            the value to keep for this point of the loop (``g.traces(tag)``).
        """


@runtime_checkable
class NamedInputModule(Protocol):
    """Receive ``.using()`` references by tag instead of positionally.

    Example:
        >>> import torch, flowdl as fl
        >>> class Shift(torch.nn.Module):
        ...     def forward_named(self, x, refs):
        ...         return x - refs["mean"]
        >>> g = (fl.Flow(torch.nn.Identity()).input("mean")
        ...        .through(Shift()).using("mean").build())
        >>> g(torch.tensor([3.0, 5.0]), torch.tensor(4.0))
        tensor([-1.,  1.])
    """

    def forward_named(self, x: Any, refs: dict[str, Any]) -> Any:
        """Called instead of ``forward`` when the node has references.

        Args:
            x: the stream.
            refs: the references' values by tag.

        Returns:
            the node's output.
        """


@runtime_checkable
class RefValidator(Protocol):
    """Declare the references a module must be fed; checked at ``build()``.

    Example:
        >>> import torch, flowdl as fl
        >>> class NeedsContext(torch.nn.Module):
        ...     def ref_names(self):
        ...         return ["context"]
        ...     def forward(self, x, context):
        ...         return x + context
        >>> fl.Flow(torch.nn.Identity()).through(NeedsContext()).build()
        Traceback (most recent call last):
        ...
        flowdl._errors.BuildError: ...
    """

    def ref_names(self) -> list[str]:
        """The tags the module expects from ``.using()``.

        Returns:
            the tags, in any order.
        """


@runtime_checkable
class Detachable(Protocol):
    """Hold state of its own that ``g.detach_state()`` should cut from autograd.

    Example:
        >>> import torch, flowdl as fl
        >>> class Memory(torch.nn.Module):
        ...     def __init__(self):
        ...         super().__init__()
        ...         self.m = torch.zeros(1)
        ...     def forward(self, x):
        ...         self.m = self.m + x
        ...         return self.m
        ...     def detach_state(self):
        ...         self.m = self.m.detach()
        >>> memory = Memory()
        >>> g = fl.Flow(torch.nn.Identity()).through(memory).build()
        >>> _ = g(torch.ones(1, requires_grad=True)); g.detach_state()
        >>> memory.m.requires_grad
        False
    """

    def detach_state(self) -> None:
        """Detach internal state from the autograd graph, keeping its values."""


@runtime_checkable
class InitialState(Protocol):
    """Choose the first-call value of a state reference this module reads.

    Example:
        >>> import torch, flowdl as fl
        >>> class Cell(torch.nn.Module):
        ...     def forward(self, x, h):
        ...         return x if h is None else x + h
        ...     def initial_state(self, ref, stream):
        ...         return None                   # the first call sees "no state yet"
        >>> g = fl.Flow(torch.nn.Identity()).through(Cell()).using("h").tag("h").build()
        >>> [g(torch.ones(1)).item() for _ in range(2)]
        [1.0, 2.0]
    """

    def initial_state(self, ref: str, stream: Any) -> Any:
        """Return the value of `ref` on a first call, or ``None`` for "no state yet".

        Args:
            ref: the tag of the state reference.
            stream: the node's stream in this call (for its batch size, dtype, device).

        Returns:
            the first value of the state, or ``None``.
        """
