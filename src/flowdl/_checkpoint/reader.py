"""Opening a checkpoint for loading: check it whole, then read tensors one at a time.

`open_checkpoint` reads and checks the header (`flowdl._checkpoint.container`), the
document (`flowdl._checkpoint.schema`) and the checksum, which it computes over the
file in fixed-size chunks, so memory does not grow with the file. The tensors are then
read one at a time, each when it is needed, straight into its own new tensor (the
safetensors layout: raw little-endian bytes at the offsets the header gives). A plain
safetensors file of weights (no flowdl metadata) opens too, as weights only.
"""

from __future__ import annotations

import mmap
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import torch
from torch import Tensor

from flowdl._checkpoint import layout
from flowdl._checkpoint.container import (
    Entry,
    Header,
    check_version,
    damaged,
    parse_json,
    read_header,
    truncated,
    unreadable,
)
from flowdl._checkpoint.schema import check_document

CHUNK = 16 << 20
"""Bytes of the file mapped at a time when checking the checksum."""


@dataclass
class Checkpoint:
    """An opened, checked checkpoint (or plain safetensors file of weights).

    Attributes:
        path: the file.
        version: the format version; 0 for a plain safetensors file.
        document: the checked document; for a plain file, one built from its names.
        entries: every stored tensor's entry, by stored name.
        aliases: stored names that are another stored tensor (tied weights).
    """

    path: str
    version: int
    document: dict[str, Any]
    entries: dict[str, Entry]
    aliases: dict[str, str]
    _data_start: int
    _size: int
    _handle: Any = field(default=None, repr=False)
    _map: Any = field(default=None, repr=False)

    @property
    def plain(self) -> bool:
        """Whether this is a plain safetensors file, without flowdl's metadata."""
        return self.version == 0

    def model_name(self, key: str) -> str:
        """The stored name of the model's state-dict `key` (an alias resolved)."""
        name = layout.model_name(key, self.version or layout.FORMAT_VERSION)
        return self.aliases.get(name, name)

    def entry(self, name: str) -> Entry:
        """The entry of a stored tensor, an alias resolved."""
        return self.entries[self.aliases.get(name, name)]

    def tensor(self, name: str) -> Tensor:
        """Read one stored tensor (an alias resolved) into a new CPU tensor.

        The bytes are read with plain reads straight into the new tensor's memory (no
        memory map, no intermediate buffer): memory grows by this tensor alone.
        """
        entry = self.entry(name)
        tensor = torch.empty(entry.shape, dtype=layout.DTYPES[entry.dtype])
        self.read_into(name, tensor)
        return tensor

    def mapped(self, name: str) -> Tensor:
        """One stored tensor as a private, copy-on-write map of the file (POSIX).

        No byte is read until the tensor is used (as safetensors' ``load_file`` does),
        and writing to it never changes the file. Where the platform or the tensor's
        alignment does not allow a map, it is read as `tensor` reads it.
        """
        entry = self.entry(name)
        dtype = layout.DTYPES[entry.dtype]
        offset = self._data_start + entry.begin
        if os.name != "posix" or offset % dtype.itemsize or entry.end == entry.begin:
            return self.tensor(name)
        if self._map is None:
            self._map = torch.UntypedStorage.from_file(self.path, shared=False, nbytes=self._size)
        view = torch.empty(0, dtype=dtype)
        view.set_(self._map, offset // dtype.itemsize, entry.shape)  # type: ignore[call-overload]
        return view

    def read_into(self, name: str, tensor: Tensor) -> None:
        """Read one stored tensor straight into `tensor`'s memory.

        `tensor` must be a contiguous CPU tensor of the stored dtype and shape.
        """
        entry = self.entry(name)
        if entry.end == entry.begin:
            return
        array: Any = tensor.detach().reshape(-1).view(torch.uint8).numpy()
        view = memoryview(array)
        try:
            if self._handle is None:
                self._handle = open(self.path, "rb", buffering=0)  # noqa: SIM115 (closed by close())
            self._handle.seek(self._data_start + entry.begin)
            done = 0
            while done < len(view):
                count = self._handle.readinto(view[done:])
                if not count:
                    raise truncated(self.path, f"the data of {name!r} ends early")
                done += count
        except OSError as error:
            raise unreadable(self.path, error) from error

    def close(self) -> None:
        """Let go of the file."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def open_checkpoint(path: str | os.PathLike[str], *, verify: bool = True) -> Checkpoint:
    """Open and check the checkpoint at `path` (without reading its tensors).

    Args:
        path: a file written by `fl.save_checkpoint`, or a plain safetensors file.
        verify: check the checksum over the whole file (``False``: the header only).

    Raises:
        CheckpointError: the file is missing, foreign, truncated or damaged.
    """
    where = str(path)
    header = read_header(path)
    if not header.flowdl:
        if any(key.startswith("flowdl.") for key in header.metadata):
            raise damaged(where, "its flowdl metadata has no 'format' field")
        document = _plain_document(header)
        return Checkpoint(where, 0, document, header.entries, {}, len(header.raw), header.size)
    version = check_version(header.metadata, where)
    text = header.metadata.get("flowdl.checkpoint")
    if not isinstance(text, str):
        raise damaged(where, "its flowdl metadata has no document")
    document = parse_json(text, where, "its flowdl metadata")
    names = set(header.entries)
    aliases = document.get("aliases", {}) if isinstance(document, dict) else {}
    if isinstance(aliases, dict):
        names.update(str(alias) for alias in aliases)
    document = check_document(document, names, where)
    for key in document["model"]["tensors"]:
        if layout.model_name(key, version) not in names:
            raise damaged(where, f"the tensor of {key!r} is missing from its data")
    if verify:
        _verify(path, header, version)
    aliases = dict(document.get("aliases", {}))
    return Checkpoint(
        where, version, document, header.entries, aliases, len(header.raw), header.size
    )


def _plain_document(header: Header) -> dict[str, Any]:
    return {
        "structural_hash": None,
        "model_type": "plain safetensors file",
        "epoch": None,
        "extra": {},
        "model": {"tensors": list(header.entries), "objects": {}},
        "optimizer": None,
        "scheduler": None,
    }


def _verify(path: str | os.PathLike[str], header: Header, version: int) -> None:
    """The checksum over the file (header with the digest zeroed, then the data) matches."""
    where = str(path)
    recorded = header.metadata.get("flowdl.checksum")
    length = layout.digest_length(version)
    if not (isinstance(recorded, str) and len(recorded) == length and _is_hex(recorded)):
        raise damaged(where, f"its checksum is unreadable ({str(recorded)[:80]!r})")
    needle = f'"flowdl.checksum":"{recorded}"'.encode()
    if header.raw.count(needle) != 1:
        raise damaged(where, "its checksum is not where fl.save_checkpoint puts it")
    zeroed = needle[: -length - 1] + layout.placeholder(version).encode() + b'"'
    head = header.raw.replace(needle, zeroed)
    try:
        with open(path, "rb") as file:
            if version == 1:
                hasher = layout.new_hasher(version)
                hasher.update(head)
                _hash_data(file, len(header.raw), header.size, hasher)
                actual = hasher.hexdigest()
            else:
                actual = layout.combine(head, _chunk_digests(file, len(header.raw), header.size))
    except OSError as error:
        raise unreadable(where, error) from error
    if actual != recorded:
        name = "SHA-256" if version == 1 else "XXH3-128"
        raise damaged(
            where,
            "its content does not match its checksum: bytes changed after it was written",
            expected=f"{name} {recorded}",
            received=f"{name} {actual}",
        )


def _hash_data(file: Any, start: int, size: int, hasher: layout.Hasher) -> None:
    """Hash the file from `start` to `size`, a window at a time.

    Each window is mapped read-only and unmapped after it is hashed: the file's pages
    are hashed where they lie in the page cache, never copied, and at most one
    window of them is mapped at once. Where mapping fails, chunks are read instead.
    """
    position = start - start % mmap.ALLOCATIONGRANULARITY
    while position < size:
        length = min(CHUNK, size - position)
        try:
            window = mmap.mmap(file.fileno(), length, offset=position, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            break
        with window:
            view = memoryview(window)
            hasher.update(view[max(0, start - position) :])
            view.release()
        position += length
    else:
        return
    file.seek(max(start, position))
    buffer = bytearray(1 << 20)
    chunk = memoryview(buffer)
    while count := file.readinto(buffer):
        hasher.update(chunk[:count])


def _chunk_digests(file: Any, start: int, size: int) -> list[bytes]:
    """The digest of each `layout.CHUNK` bytes of the file from `start`, on a few threads.

    Each chunk is mapped read-only, hashed where it lies in the page cache and unmapped
    (the hash releases the GIL, so chunks are hashed in parallel); where mapping fails,
    the chunk is read instead.
    """
    count = -(-(size - start) // layout.CHUNK)

    def digest(k: int) -> bytes:
        low = start + k * layout.CHUNK
        high = min(low + layout.CHUNK, size)
        base = low - low % mmap.ALLOCATIONGRANULARITY
        try:
            window = mmap.mmap(file.fileno(), high - base, offset=base, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            return layout.chunk_digest(os.pread(file.fileno(), high - low, low))
        with window:
            view = memoryview(window)
            result = layout.chunk_digest(view[low - base :])
            view.release()
        return result

    workers = min(4, os.cpu_count() or 1, count)
    if workers <= 1:
        return [digest(k) for k in range(count)]
    with ThreadPoolExecutor(workers, thread_name_prefix="flowdl-checksum") as pool:
        return list(pool.map(digest, range(count)))


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)
