"""`DatasetError`: a dataset file is not what its parser expects."""

from __future__ import annotations

from flowdl._errors import _render


class DatasetError(ValueError):
    """A dataset file is missing, of another format, damaged or truncated.

    Attributes:
        problem: one line saying what went wrong.
        path: the file.
        expected: what the parser expected.
        received: what it found.
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
