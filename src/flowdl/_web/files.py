"""Writing text files all at once: a reader sees the old file or the new one, never half."""

from __future__ import annotations

import os
from pathlib import Path

from flowdl._checkpoint.atomic import write_atomically


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically, with `write_atomically`.

    The text goes into a temporary file in the same folder, flushed to disk, then
    renamed over `path`; on any failure the temporary file is removed and `path` is
    left as it was, so a crash never leaves a truncated page or CSV behind.

    Args:
        path: the file to write; its folder must exist.
        text: the whole content.

    Returns:
        The path written, as a `Path`.

    Raises:
        FileNotFoundError: the folder does not exist.
        IsADirectoryError: `path` is a folder.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> write_text_atomic(folder / "a.txt", "hello").read_text()
        'hello'
    """
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(
            f"cannot write {str(target)!r}: the folder {str(folder)!r} does not exist; "
            "create it first (Path(...).mkdir(parents=True))"
        )
    if target.is_dir():
        raise IsADirectoryError(f"cannot write {str(target)!r}: it is a folder; give a file name")
    write_atomically(target, text.encode("utf-8"))
    return target
