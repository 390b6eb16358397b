"""The checkpoint file's layout: names, versions, dtypes and checksums of each version.

A checkpoint is a safetensors file: 8 bytes little-endian header length ``N``, ``N``
bytes of JSON header (space-padded to a multiple of 8), then the tensor data. The
header's ``__metadata__`` holds four strings:

- ``"format"``: ``"flowdl.checkpoint"``;
- ``"flowdl.format_version"``: the version of this layout (`FORMAT_VERSION`);
- ``"flowdl.checkpoint"``: the document, a JSON object (see `flowdl._checkpoint.save`);
- ``"flowdl.checksum"``: a digest of the whole file computed with these hex digits
  replaced by zeros, so any damaged byte, in the header or the data, is detected.
  Version 2's is the XXH3-128 of the header (8 length bytes and JSON, digest zeroed)
  followed by the 16-byte XXH3-128 digests of each `CHUNK` bytes of the data, in order
  (the last chunk may be shorter): the chunks can be hashed on several threads.

Version 2 (written today): the model's tensors under their plain ``state_dict``
names, everything else (optimizer, scheduler, module extra state) under
``__flowdl__/``; the checksum is XXH3-128 (32 hex digits), fast enough to check a
file at the speed it is read. It detects damage, not tampering (nor did version 1's).
Version 1: model tensors as ``model/<key>``, others as ``optimizer/...`` and so on;
the checksum is SHA-256 (64 hex digits). Both load.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import safetensors.torch
import torch
import xxhash

FORMAT = "flowdl.checkpoint"
FORMAT_VERSION = 2
NAMESPACE = "__flowdl__/"
"""The start of every stored name that is not one of the model's state-dict keys."""

MAX_HEADER = 100_000_000
"""The largest header read (safetensors' own limit)."""

MAX_DEPTH = 64
"""The deepest nesting of JSON values a checkpoint's document may hold."""

DTYPES: dict[str, torch.dtype] = {
    name: dtype for name, dtype in safetensors.torch._TYPES.items() if dtype is not None
}
"""safetensors' dtype names and the torch dtypes they stand for."""

NAMES: dict[torch.dtype, str] = {dtype: name for name, dtype in DTYPES.items()}


CHUNK = 16 << 20
"""Bytes of data per digest in version 2's checksum."""


class ChunkedHasher:
    """Version 2's checksum, fed the header first, then the data in any pieces.

    Example:
        >>> a = ChunkedHasher(b"head"); a.update(b"x" * 10); a.update(b"y")
        >>> a.hexdigest() == combine(b"head", [chunk_digest(b"x" * 10 + b"y")])
        True
    """

    def __init__(self, header: bytes) -> None:
        self._header = header
        self._digests: list[bytes] = []
        self._current = xxhash.xxh3_128()
        self._filled = 0

    def update(self, data: Any) -> None:
        """Hash more data bytes (a bytes-like object)."""
        view = memoryview(data).cast("B")
        position = 0
        while position < len(view):
            take = min(CHUNK - self._filled, len(view) - position)
            self._current.update(view[position : position + take])
            self._filled += take
            position += take
            if self._filled == CHUNK:
                self._digests.append(self._current.digest())
                self._current, self._filled = xxhash.xxh3_128(), 0

    def hexdigest(self) -> str:
        """The checksum of the header and all the data given."""
        tail = [self._current.digest()] if self._filled else []
        return combine(self._header, self._digests + tail)


def chunk_digest(data: Any) -> bytes:
    """The digest of one chunk of data."""
    return xxhash.xxh3_128(data).digest()


def combine(header: bytes, digests: list[bytes]) -> str:
    """Version 2's checksum from the header and the digests of the data's chunks."""
    hasher = xxhash.xxh3_128(header)
    for digest in digests:
        hasher.update(digest)
    return hasher.hexdigest()


class Hasher(Protocol):
    """What a checksum needs: ``update`` with bytes, then ``hexdigest``."""

    def update(self, data: Any, /) -> None: ...

    def hexdigest(self) -> str: ...


def new_hasher(version: int) -> Hasher:
    """Version 1's checksum: SHA-256 over the whole file."""
    return hashlib.sha256()


def digest_length(version: int) -> int:
    """How many hex digits the checksum of format `version` has."""
    return 64 if version == 1 else 32


def placeholder(version: int) -> str:
    """What stands for the checksum while it is computed."""
    return "0" * digest_length(version)


def model_name(key: str, version: int) -> str:
    """The stored name of the model's state-dict `key` in format `version`.

    Example:
        >>> model_name("0.weight", 2), model_name("0.weight", 1)
        ('0.weight', 'model/0.weight')
    """
    return key if version >= 2 else "model/" + key


def other_prefix(part: str, version: int) -> str:
    """The start of the stored names of `part` (``"optimizer"``, ``"scheduler"``, ...).

    Example:
        >>> other_prefix("optimizer", 2), other_prefix("optimizer", 1)
        ('__flowdl__/optimizer', 'optimizer')
    """
    return NAMESPACE + part if version >= 2 else part


def element_size(dtype_name: str) -> int:
    """Bytes per element of a safetensors dtype name (known to `DTYPES`)."""
    return DTYPES[dtype_name].itemsize
