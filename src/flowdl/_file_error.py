"""`FileError`: the base of errors about a file (a checkpoint, a dataset file)."""

from __future__ import annotations

from flowdl._errors import Field, FlowdlError


class FileError(FlowdlError, ValueError):
    """A file is missing, of another format, damaged, or does not fit what it is loaded into.

    Attributes:
        problem: one line saying what went wrong.
        path: the file (or files).
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
        super().__init__(problem, expected=expected, received=received, fix=fix)
        self.path = path

    def fields(self) -> list[Field]:
        return [("file", self.path), *super().fields()]
