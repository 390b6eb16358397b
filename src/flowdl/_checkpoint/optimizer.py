"""An optimizer's state in a checkpoint: hyperparameters in JSON, state tensors as data.

`torch.optim.Optimizer.state_dict()` refers to parameters by position. The
checkpoint also records each position's parameter name (in the model) and shape,
so a load can check that the optimizer it restores covers the same parameters in
the same order before anything is changed.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.optim import Optimizer

from flowdl._checkpoint.encoding import decode, encode
from flowdl._checkpoint.errors import CheckpointError, check_component
from flowdl._checkpoint.layout import FORMAT_VERSION, other_prefix

PREFIX = other_prefix("optimizer", FORMAT_VERSION)


def parameter_names(model: nn.Module) -> dict[int, str]:
    """``id(parameter) -> name`` (the first name of a tied parameter)."""
    names: dict[int, str] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(parameter), name)
    return names


def capture(
    optimizer: Optimizer, names: dict[int, str], tensors: dict[str, Tensor]
) -> dict[str, Any]:
    """The optimizer's entry of the document; its state tensors go into `tensors`."""
    if not isinstance(optimizer, Optimizer):
        raise TypeError(
            "save_checkpoint(optimizer=...) takes a torch.optim.Optimizer, received "
            f"{type(optimizer).__name__}"
        )
    return {
        "type": type(optimizer).__qualname__,
        "parameters": _layout(optimizer, names),
        "state": encode(optimizer.state_dict(), "the optimizer's state", tensors, PREFIX),
    }


def _layout(optimizer: Optimizer, names: dict[int, str]) -> list[list[list[Any]]]:
    """Per group, per position: ``[name or None, shape]`` of the parameter."""
    return [
        [[names.get(id(p)), list(p.shape)] for p in group["params"]]
        for group in optimizer.param_groups
    ]


def prepare(
    optimizer: Optimizer,
    saved: dict[str, Any] | None,
    loaded: set[str],
    names: dict[int, str],
    where: str,
) -> Any:
    """Check that `saved` fits `optimizer`; return its encoded state dict to load.

    The state is returned encoded: its tensors are read from the file only when it is
    decoded, just before it is loaded.

    Raises:
        CheckpointError: it does not fit (another optimizer type, other parameters,
            or parameters that were not loaded from the checkpoint).
    """
    saved = check_component(
        saved, optimizer, "optimizer", "create the optimizer as torch.optim.{}(...)", where
    )
    _check_layout(_layout(optimizer, names), saved["parameters"], where)
    for group in saved["parameters"]:
        for name, _ in group:
            if name is not None and name not in loaded:
                raise CheckpointError(
                    f"the optimizer updates {name!r}, which was not loaded from the checkpoint",
                    path=where,
                    expected="every parameter of the optimizer loaded from the checkpoint",
                    received=f"{name!r} is missing from it or has another shape",
                    fix="the optimizer's state belongs to parameters the model no longer has: "
                    "load without optimizer=... and start the optimizer afresh",
                )
    state = decode(saved["state"], _Names())
    if not isinstance(state, dict) or "param_groups" not in state:
        raise CheckpointError(
            "the checkpoint's optimizer state is not an optimizer state dict",
            path=where,
            fix="use another checkpoint",
        )
    return saved["state"]


class _Names(dict[str, Any]):
    """Stands for the tensors while the shape of a state is checked: each name is itself."""

    def __missing__(self, name: str) -> str:
        return name


def _check_layout(current: list[list[list[Any]]], saved: list[list[list[Any]]], where: str) -> None:
    if len(current) != len(saved):
        raise CheckpointError(
            "the optimizer has another number of parameter groups than the checkpoint's",
            path=where,
            expected=f"{len(saved)} parameter groups, as saved",
            received=f"{len(current)} parameter groups",
            fix="create the optimizer with the same parameter groups as when it was saved",
        )
    for g, (now, then) in enumerate(zip(current, saved, strict=True)):
        if len(now) != len(then):
            raise CheckpointError(
                f"parameter group {g} of the optimizer has another number of parameters",
                path=where,
                expected=f"{len(then)} parameters, as saved",
                received=f"{len(now)} parameters",
                fix="create the optimizer over the same parameters as when it was saved",
            )
        for i, ((name, shape), (saved_name, saved_shape)) in enumerate(zip(now, then, strict=True)):
            if name != saved_name or list(shape) != list(saved_shape):
                raise CheckpointError(
                    f"parameter {i} of optimizer group {g} is not the one saved there",
                    path=where,
                    expected=f"{saved_name or 'a parameter outside the model'} {saved_shape}",
                    received=f"{name or 'a parameter outside the model'} {list(shape)}",
                    fix="create the optimizer over the same parameters, in the same order "
                    "(e.g. model.parameters()), as when it was saved",
                )
