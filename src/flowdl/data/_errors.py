"""`DatasetError`: a dataset file is not what its parser expects."""

from __future__ import annotations

from flowdl._file_error import FileError


class DatasetError(FileError):
    """A dataset file is missing, of another format, damaged or truncated (a `ValueError`).

    Attributes:
        problem: one line saying what went wrong.
        path: the file.
        expected: what the parser expected.
        received: what it found.
        fix: how to fix it.
    """
