"""`CheckpointError`: a checkpoint could not be written or read, or does not fit."""

from __future__ import annotations

from flowdl._errors import _render


class CheckpointError(ValueError):
    """A checkpoint could not be saved or loaded.

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

    def __init__(
        self,
        problem: str,
        *,
        path: str | None = None,
        expected: str | None = None,
        received: str | None = None,
        fix: str | None = None,
    ) -> None:
        self.problem = problem
        self.path = path
        self.expected = expected
        self.received = received
        self.fix = fix
        super().__init__(
            _render(
                problem,
                [("file", path), ("expected", expected), ("received", received), ("fix", fix)],
            )
        )
