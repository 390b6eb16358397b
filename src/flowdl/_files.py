"""Writing files atomically: a reader sees the old file or the new one, never half of one.

Checkpoints, pages, drawings and exports all write through here, so a crash, a full
disk or a ``kill`` in the middle of a write never leaves a truncated file behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path

__all__ = ["write_atomically", "write_text_atomic"]


def write_atomically(path: str | os.PathLike[str], data: bytes) -> None:
    """Replace the file at `path` by `data`, surviving a crash at any point.

    The bytes go into a temporary file in the same directory, which is flushed and
    fsynced, then renamed over `path` (`os.replace`, atomic on POSIX and Windows),
    and the directory is fsynced so that the rename itself is durable. On any
    failure the temporary file is removed and `path` is left as it was.

    Args:
        path: the file to write; its directory must exist.
        data: the complete new content.

    Raises:
        OSError: the file could not be written (nothing was replaced).
    """
    target = Path(path)
    directory = target.parent
    handle, temporary = _create_temporary(target)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


def _create_temporary(target: Path) -> tuple[int, Path]:
    """A new, empty file next to `target`, with the permissions a new file gets (umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        temporary = target.parent / f".{target.name}.{secrets.token_hex(6)}.partial"
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue


def _fsync_directory(directory: Path) -> None:
    """Make a rename in `directory` durable (where the platform allows opening directories)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # Windows cannot open a directory; its rename is durable already
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on directories
        pass
    finally:
        os.close(fd)


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
