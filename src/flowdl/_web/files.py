"""Writing files all at once: a reader sees the old file or the new one, never half of one."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write `text` (UTF-8) to `path` through a temporary file and `os.replace`.

    The temporary file lives in the same folder, is flushed to disk before the
    rename, and is removed if anything fails, so a crash never leaves a truncated
    file where a good one was.

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
    mode = target.stat().st_mode & 0o777 if target.exists() else 0o644
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return target
