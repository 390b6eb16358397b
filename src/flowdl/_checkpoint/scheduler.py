"""A learning-rate scheduler's state in a checkpoint (any object with ``state_dict()``).

`torch.optim.lr_scheduler` schedulers keep numbers and lists; the functions a
`LambdaLR` or `MultiplicativeLR` is given are not state (PyTorch stores ``None`` for
them): the scheduler recreated before loading brings them. A callable object's
attributes are stored when they are data; anything else is a clear error at save.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from torch import Tensor

from flowdl._checkpoint.encoding import decode, encode
from flowdl._checkpoint.errors import CheckpointError, check_component
from flowdl._checkpoint.layout import FORMAT_VERSION, other_prefix

PREFIX = other_prefix("scheduler", FORMAT_VERSION)


class Stateful(Protocol):
    """What a scheduler needs: PyTorch's ``state_dict`` / ``load_state_dict`` pair."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state_dict: dict[str, Any]) -> None: ...


def capture(scheduler: Stateful, tensors: dict[str, Tensor]) -> dict[str, Any]:
    """The scheduler's entry of the document; tensors in its state go into `tensors`."""
    if not callable(getattr(scheduler, "state_dict", None)):
        raise TypeError(
            "save_checkpoint(scheduler=...) takes a scheduler with state_dict() and "
            f"load_state_dict(), received {type(scheduler).__name__}"
        )
    return {
        "type": type(scheduler).__qualname__,
        "state": encode(scheduler.state_dict(), "the scheduler's state", tensors, PREFIX),
    }


def prepare(
    scheduler: Stateful, saved: dict[str, Any] | None, tensors: Mapping[str, Tensor], where: str
) -> dict[str, Any]:
    """Check that `saved` fits `scheduler`; return the state dict to load into it.

    Raises:
        CheckpointError: the checkpoint has no scheduler state, or another scheduler's.
    """
    saved = check_component(saved, scheduler, "scheduler", "create a {}", where)
    state = decode(saved["state"], tensors)
    if not isinstance(state, dict):
        raise CheckpointError(
            "the checkpoint's scheduler state is not a dict",
            path=where,
            fix="use another checkpoint",
        )
    return state
