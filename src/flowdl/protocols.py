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
    """Reset per-call state before each forward, knowing the batch size and device."""

    def reset(self, batch_size: int, device: torch.device) -> None:
        """Called at the start of every forward of the graph holding this module."""


@runtime_checkable
class Traced(Protocol):
    """A loop body that reports a value after each iteration."""

    def trace(self) -> Tensor:
        """Called before the first iteration and after each iteration of a loop."""


@runtime_checkable
class NamedInputModule(Protocol):
    """Receive ``.using()`` references by tag instead of positionally."""

    def forward_named(self, x: Any, refs: dict[str, Any]) -> Any:
        """Called instead of ``forward`` when the node has references."""


@runtime_checkable
class RefValidator(Protocol):
    """Declare the references a module must be fed; checked at ``build()``."""

    def ref_names(self) -> list[str]:
        """The tags the module expects from ``.using()``."""


@runtime_checkable
class Detachable(Protocol):
    """Hold state of its own that ``g.detach_state()`` should cut from autograd."""

    def detach_state(self) -> None:
        """Detach internal state from the autograd graph, keeping its values."""


@runtime_checkable
class InitialState(Protocol):
    """Choose the first-call value of a state reference this module reads."""

    def initial_state(self, ref: str, stream: Any) -> Any:
        """Return the value of `ref` on a first call, or ``None`` for "no state yet"."""
