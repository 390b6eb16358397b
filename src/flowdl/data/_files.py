"""Read a dataset file, decompressing it when its content is gzip (whatever its name)."""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

from flowdl.data._errors import DatasetError

GZIP_MAGIC = b"\x1f\x8b"


def read_bytes(path: str | os.PathLike[str], what: str) -> bytes:
    """The content of `path`, gunzipped if it starts with the gzip magic bytes.

    Args:
        path: the file.
        what: what the file should be, for messages (``"MNIST images"``).

    Raises:
        DatasetError: the file is missing or unreadable, or its gzip stream is damaged.
    """
    where = str(path)
    try:
        data = Path(path).read_bytes()
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
    if not data.startswith(GZIP_MAGIC):
        return data
    try:
        return gzip.decompress(data)
    except (EOFError, OSError, zlib.error) as error:
        raise DatasetError(
            f"the {what} file is gzip-compressed but its gzip stream is damaged or truncated",
            path=where,
            received=f"{type(error).__name__}: {error}",
            fix="download the file again",
        ) from error


def describe_start(data: bytes) -> str:
    """What the first bytes of a file suggest it is, for messages."""
    if data[257:262] == b"ustar":
        return "a tar archive"
    if data.startswith(b"PK\x03\x04"):
        return "a zip archive"
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle"
    if not data:
        return "an empty file"
    return f"first bytes {data[:8].hex(' ')}"
