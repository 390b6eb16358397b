"""`CheckpointError`: a checkpoint could not be written or read, or does not fit."""

from __future__ import annotations

from typing import Any

from flowdl._file_error import FileError


class CheckpointError(FileError):
    """A checkpoint could not be saved or loaded (a `ValueError`).

    Raised for files that are not flowdl checkpoints, damaged or truncated files,
    checkpoints of another model (a structural-hash mismatch), state that cannot be
    stored, and optimizers or schedulers that do not match the checkpoint. A load
    that raises it has changed nothing: the model, optimizer and scheduler are as
    they were.

    Attributes:
        problem: one line saying what went wrong.
        path: the checkpoint file.
        expected: what was expected.
        received: what was found.
        fix: how to fix it.
    """


def check_component(
    saved: dict[str, Any] | None, component: object, role: str, create: str, where: str
) -> dict[str, Any]:
    """`saved` (an optimizer's or scheduler's entry) exists and is of `component`'s class.

    Args:
        saved: the entry of the checkpoint's document, or ``None`` when not saved.
        component: the optimizer or scheduler it is to be loaded into.
        role: ``"optimizer"`` or ``"scheduler"``.
        create: how to create one of the saved class, ``{}`` standing for its name.
        where: the checkpoint's path.

    Raises:
        CheckpointError: nothing was saved, or the saved class is another.
    """
    kind = type(component).__qualname__
    if saved is None:
        raise CheckpointError(
            f"the checkpoint has no {role} state",
            path=where,
            expected=f"the state of a {kind}",
            received=f"a checkpoint saved without {role}=...",
            fix=f"load without {role}=..., or save the checkpoint with the {role}",
        )
    if saved["type"] != kind:
        raise CheckpointError(
            f"the checkpoint holds the state of a {saved['type']}, not of a {kind}",
            path=where,
            expected=f"a {kind}'s state",
            received=f"a {saved['type']}'s state",
            fix=f"{create.format(saved['type'])} before loading, or load without {role}=...",
        )
    return saved
