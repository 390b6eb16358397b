"""Writing files atomically: a reader sees the old file or the new one, never half of one.

Checkpoints, pages, drawings and exports all write through here, so a crash, a full
disk or a ``kill`` in the middle of a write never leaves a truncated file behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = [
    "partial_files",
    "remove_stale_partials",
    "write_atomically",
    "write_text_atomic",
    "writing_atomically",
]


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
    with writing_atomically(path) as file:
        file.write(data)


@contextlib.contextmanager
def writing_atomically(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """A file to write (and seek in) that replaces `path` when the block ends without error.

    The temporary file is ``.<name>.flowdl-partial-<pid>-<random>`` in the same
    directory, so a person who finds one after a crash knows what it is. Before it is
    created, the partial files of earlier writes of `path` whose process is no longer
    running are removed (a write killed with ``kill -9`` leaves one behind); those of
    running processes, such as a concurrent write, are left alone. At the end of the
    block the file is flushed, fsynced and renamed over `path`; on an error it is removed.

    Args:
        path: the file to write; its directory must exist.

    Yields:
        the open temporary file, in binary mode.

    Raises:
        OSError: the file could not be written (nothing was replaced).

    Example:
        >>> import tempfile, pathlib
        >>> target = pathlib.Path(tempfile.mkdtemp()) / "data.bin"
        >>> with writing_atomically(target) as file:
        ...     _ = file.write(b"hello")
        >>> target.read_bytes()
        b'hello'
    """
    target = Path(path)
    remove_stale_partials(target)
    handle, temporary = _create_temporary(target)
    try:
        with os.fdopen(handle, "wb") as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
    _fsync_directory(target.parent)


PARTIAL = ".flowdl-partial-"
"""What the name of every temporary file of an atomic write contains."""


def partial_files(path: str | os.PathLike[str]) -> list[Path]:
    """The temporary files of atomic writes of `path` (finished or not) present now."""
    target = Path(path)
    prefix = f".{target.name}{PARTIAL}"
    try:
        names = os.listdir(target.parent)
    except OSError:
        return []
    return [target.parent / name for name in sorted(names) if name.startswith(prefix)]


def remove_stale_partials(path: str | os.PathLike[str]) -> list[Path]:
    """Remove the partial files of writes of `path` whose process is gone; return them."""
    removed = []
    for partial in partial_files(path):
        pid_text = partial.name.rsplit(PARTIAL, 1)[1].split("-", 1)[0]
        if not pid_text.isdecimal() or _running(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            partial.unlink()
            removed.append(partial)
    return removed


def _running(pid: int) -> bool:
    """Whether process `pid` may still be running (when unsure: yes)."""
    if pid == os.getpid():
        return True
    if os.name != "posix":
        return True  # no safe liveness check without extra dependencies
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def _create_temporary(target: Path) -> tuple[int, Path]:
    """A new, empty file next to `target`, with the permissions a new file gets (umask)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        name = f".{target.name}{PARTIAL}{os.getpid()}-{secrets.token_hex(4)}"
        temporary = target.parent / name
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
