"""Read a dataset file as a stream, gunzipped on the fly when its content is gzip.

Readers check a file's header from the first bytes of the stream, then read exactly
the size the header declares and check that the stream ends there: a damaged or
hostile file (a small gzip stream that decompresses to gigabytes) is refused after
reading at most what its header promised, never decompressed whole first. Only
regular files are opened: a named pipe, a device or a folder is refused at once
(opening a pipe would wait for a writer; reading ``/dev/zero`` would never end).
"""

from __future__ import annotations

import gzip
import os
import stat
import zlib
from types import TracebackType
from typing import BinaryIO

from flowdl.data._errors import DatasetError

GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20
"""Bytes read at a time: a stream longer than promised is refused within one chunk."""

__all__ = ["DataStream", "describe_start", "open_stream", "read_bytes"]


class DataStream:
    """An open dataset file: its bytes, decompressed as they are read if it is gzip.

    Use `open_stream` to create one, as a context manager.

    Attributes:
        path: the file, for messages.
        what: what the file should be, for messages (``"MNIST images"``).
        compressed: whether the file is gzip.
    """

    def __init__(self, raw: BinaryIO, path: str, what: str) -> None:
        self.path, self.what = path, what
        self._raw = raw
        self.compressed = raw.read(2) == GZIP_MAGIC
        raw.seek(0)
        self._stream: BinaryIO | gzip.GzipFile = (
            gzip.GzipFile(fileobj=raw) if self.compressed else raw
        )

    def fill(self, buffer: bytearray, total: int) -> bytearray:
        """Read into `buffer` until it holds `total` bytes or the stream ends; returns it.

        Raises:
            DatasetError: the gzip stream is damaged or truncated.
        """
        while len(buffer) < total:
            try:
                chunk = self._stream.read(min(CHUNK, total - len(buffer)))
            except (EOFError, OSError, zlib.error) as error:
                raise DatasetError(
                    f"the {self.what} file is gzip-compressed but its gzip stream is damaged "
                    "or truncated",
                    path=self.path,
                    received=f"{type(error).__name__}: {error}",
                    fix="download the file again",
                ) from error
            if not chunk:
                break
            buffer += chunk
        return buffer

    def read(self, size: int) -> bytearray:
        """The next `size` bytes, or fewer where the stream ends."""
        return self.fill(bytearray(), size)

    def at_end(self) -> bool:
        """Whether the stream has no byte left (reads one byte if it has)."""
        return not self.read(1)

    def close(self) -> None:
        if self._stream is not self._raw:
            self._stream.close()
        self._raw.close()

    def __enter__(self) -> DataStream:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()


def open_stream(path: str | os.PathLike[str], what: str) -> DataStream:
    """Open a dataset file for streaming: a regular file, gzipped or not.

    Args:
        path: the file.
        what: what the file should be, for messages (``"MNIST images"``).

    Raises:
        DatasetError: the path is missing, unreadable, or not a regular file (a named
            pipe, a device, a folder).
    """
    where = str(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        handle = os.open(path, flags)  # non-blocking: opening a pipe does not wait
    except FileNotFoundError as error:
        raise DatasetError(
            f"there is no {what} file at this path",
            path=where,
            fix="check the path; the standard files keep their names when downloaded",
        ) from error
    except OSError as error:
        raise DatasetError(
            f"the {what} file cannot be read",
            path=where,
            received=f"{type(error).__name__}: {error}",
            fix="check that the path names a readable file",
        ) from error
    mode = os.fstat(handle).st_mode
    if not stat.S_ISREG(mode):
        os.close(handle)
        raise DatasetError(
            f"the {what} path is not a regular file",
            path=where,
            expected="a regular file",
            received=_kind(mode),
            fix="pass the downloaded file itself (save a stream to a file first)",
        )
    raw = os.fdopen(handle, "rb")
    try:
        return DataStream(raw, where, what)
    except OSError as error:
        raw.close()
        raise DatasetError(
            f"the {what} file cannot be read",
            path=where,
            received=f"{type(error).__name__}: {error}",
            fix="check that the path names a readable file",
        ) from error


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a folder"),
        (stat.S_ISFIFO, "a named pipe (FIFO)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_bytes(path: str | os.PathLike[str], what: str, limit: int) -> bytearray:
    """The whole content of `path`, gunzipped if it is gzip, of at most `limit` bytes.

    Args:
        path: the file.
        what: what the file should be, for messages.
        limit: the most bytes accepted (after decompression); a longer stream is
            refused after reading ``limit + 1`` bytes.

    Raises:
        DatasetError: as `open_stream`; the gzip stream is damaged; the content is
            longer than `limit`.
    """
    with open_stream(path, what) as stream:
        data = stream.read(limit + 1)
    if len(data) > limit:
        raise DatasetError(
            f"the {what} file is larger than flowdl reads ({limit:,} bytes"
            + (" once decompressed)" if stream.compressed else ")"),
            path=str(path),
            expected=f"at most {limit:,} bytes",
            received=f"more than {limit:,} bytes" + (" (gzip)" if stream.compressed else ""),
            fix="split the file, or check that it is the file you meant",
        )
    return data


def describe_start(data: bytes | bytearray) -> str:
    """What the first bytes of a file suggest it is, for messages."""
    if data[257:262] == b"ustar":
        return "a tar archive"
    if data.startswith(b"PK\x03\x04"):
        return "a zip archive"
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle"
    if not data:
        return "an empty file"
    return f"first bytes {bytes(data[:8]).hex(' ')}"
