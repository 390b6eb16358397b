"""The checkpoint file: one safetensors file with flowdl's metadata and a checksum.

Layout (the safetensors format): 8 bytes little-endian header length ``N``, ``N``
bytes of JSON header, then the tensor data. The header's ``__metadata__`` holds
four strings:

- ``"format"``: ``"flowdl.checkpoint"``;
- ``"flowdl.format_version"``: the version of this layout (`FORMAT_VERSION`);
- ``"flowdl.checkpoint"``: the document, a JSON object (see `flowdl._checkpoint.save`);
- ``"flowdl.checksum"``: the SHA-256 of the whole file with these 64 hex digits
  replaced by zeros, so any damaged byte, in the header or the data, is detected.

Tensors that are the same tensor (tied weights) are stored once: the document's
``"aliases"`` maps the other names to the stored one. Different views of one storage
are stored as separate copies. Reading never runs code: JSON and raw tensor bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from torch import Tensor

from flowdl._checkpoint.errors import CheckpointError

FORMAT = "flowdl.checkpoint"
FORMAT_VERSION = 1
_PLACEHOLDER = "0" * 64
_MAX_HEADER = 100_000_000  # safetensors' own limit


@dataclass(frozen=True)
class Contents:
    """What a checkpoint file holds.

    Attributes:
        document: the decoded ``"flowdl.checkpoint"`` JSON object.
        tensors: every tensor by name, aliases included (on the CPU).
        entries: the safetensors header's entry of each stored tensor (dtype, shape).
        format_version: the version of the layout the file was written in.
    """

    document: dict[str, Any]
    tensors: dict[str, Tensor]
    entries: dict[str, dict[str, Any]]
    format_version: int


def pack(tensors: dict[str, Tensor], document: dict[str, Any]) -> bytes:
    """The bytes of a checkpoint holding `tensors` and `document`."""
    stored, aliases = _deduplicate(tensors)
    document = {**document, "aliases": aliases}
    metadata = {
        "format": FORMAT,
        "flowdl.format_version": str(FORMAT_VERSION),
        "flowdl.checkpoint": json.dumps(document, separators=(",", ":"), allow_nan=False),
        "flowdl.checksum": _PLACEHOLDER,
    }
    data = safetensors.torch.save(stored, metadata)
    start, end = _checksum_span(data, _PLACEHOLDER)
    digest = hashlib.sha256(data).hexdigest()
    return data[:start] + digest.encode() + data[end:]


def _deduplicate(tensors: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Store each tensor once: the same view twice is an alias; other views are copied."""
    by_storage: dict[tuple[str, int], list[str]] = {}
    for name, tensor in tensors.items():
        if tensor.numel() > 0:
            storage = tensor.untyped_storage()
            by_storage.setdefault((str(tensor.device), storage.data_ptr()), []).append(name)
    aliases: dict[str, str] = {}
    copy: set[str] = set()
    for names in by_storage.values():
        views: dict[tuple[Any, ...], str] = {}
        for name in names:
            t = tensors[name]
            view = (t.storage_offset(), tuple(t.shape), t.stride(), t.dtype)
            if view in views:
                aliases[name] = views[view]
            else:
                views[view] = name
        if len(views) > 1:
            copy.update(views.values())
    stored: dict[str, Tensor] = {}
    for name, tensor in tensors.items():
        if name in aliases:
            continue
        tensor = tensor.detach().to("cpu")
        if name in copy or not tensor.is_contiguous():
            tensor = tensor.clone(memory_format=torch.contiguous_format)
        stored[name] = tensor
    return stored, aliases


def read(path: str | os.PathLike[str]) -> Contents:
    """Read and verify a whole checkpoint.

    Raises:
        CheckpointError: the file is missing, foreign, truncated or damaged.
    """
    where = str(path)
    data = _read_bytes(path)
    header = _parse_header(data, where, whole_file=True)
    metadata = _flowdl_metadata(header, where)
    _check_size(data, header, where)
    _verify_checksum(data, metadata, where)
    try:
        stored = safetensors.torch.load(data)
    except Exception as error:
        raise _damaged(where, f"its tensor data cannot be read ({error})") from error
    document = _document(metadata, where)
    tensors = dict(stored)
    aliases = document.get("aliases", {})
    for alias, name in aliases.items():
        if name not in stored:
            raise _damaged(where, f"the alias {alias!r} names no stored tensor {name!r}")
        tensors[alias] = stored[name]
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    return Contents(document, tensors, entries, int(metadata["flowdl.format_version"]))


def read_header(path: str | os.PathLike[str]) -> Contents:
    """Read a checkpoint's header only: its document and tensor entries, no tensor data.

    Raises:
        CheckpointError: the file is missing, foreign or its header is truncated or damaged.
    """
    where = str(path)
    try:
        with open(path, "rb") as file:
            head = file.read(8)
            length = int.from_bytes(head, "little") if len(head) == 8 else 0
            rest = file.read(length) if 0 < length <= _MAX_HEADER else b""
    except OSError as error:
        raise _unreadable(where, error) from error
    header = _parse_header(head + rest, where, whole_file=False)
    metadata = _flowdl_metadata(header, where)
    document = _document(metadata, where)
    entries = {k: v for k, v in header.items() if k != "__metadata__"}
    return Contents(document, {}, entries, int(metadata["flowdl.format_version"]))


def _read_bytes(path: str | os.PathLike[str]) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as error:
        raise _unreadable(str(path), error) from error


def _unreadable(where: str, error: OSError) -> CheckpointError:
    if isinstance(error, FileNotFoundError):
        problem, fix = "there is no checkpoint at this path", "check the path"
    elif isinstance(error, IsADirectoryError):
        problem, fix = "the path is a directory, not a checkpoint file", "name the file"
    else:
        problem, fix = "the checkpoint cannot be read", "check the file's permissions"
    received = f"{type(error).__name__}: {error}"
    return CheckpointError(problem, path=where, received=received, fix=fix)


def _parse_header(data: bytes, where: str, whole_file: bool) -> dict[str, Any]:
    length = int.from_bytes(data[:8], "little") if len(data) >= 8 else 0
    if not (data[8:9] == b"{" and 2 <= length <= _MAX_HEADER):
        foreign = _foreign_kind(data)
        if foreign is not None:
            raise CheckpointError(
                f"this is not a flowdl checkpoint: it looks like {foreign}",
                path=where,
                expected="a file written by fl.save_checkpoint (safetensors with flowdl metadata)",
                received=foreign,
                fix=_foreign_fix(foreign),
            )
        if len(data) < 8:
            raise _truncated(where, f"the file has {len(data)} bytes, fewer than a header's 8")
        raise CheckpointError(
            "this is not a flowdl checkpoint: it does not start with a safetensors header",
            path=where,
            expected="8 bytes of header size, then a JSON header starting with '{'",
            received=f"first bytes {data[:16]!r}",
            fix="pass a file written by fl.save_checkpoint",
        )
    if 8 + length > len(data):
        total = "file" if whole_file else "readable part"
        raise _truncated(where, f"the header needs {length} bytes, the {total} has {len(data) - 8}")
    try:
        header = json.loads(data[8 : 8 + length].decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise _damaged(where, f"its header is not valid JSON ({error})") from error
    if not isinstance(header, dict):
        raise _damaged(where, "its header is not a JSON object")
    return header


def _flowdl_metadata(header: dict[str, Any], where: str) -> dict[str, Any]:
    metadata = header.get("__metadata__")
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        names = sorted(k for k in header if k != "__metadata__")
        raise CheckpointError(
            "this safetensors file was not written by fl.save_checkpoint (no flowdl metadata), "
            "or its header is damaged",
            path=where,
            expected=f"__metadata__ with format {FORMAT!r}",
            received=f"a safetensors file with {len(names)} tensors"
            + (f" ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})" if names else ""),
            fix="plain safetensors weights load with safetensors.torch.load_model(model, path) "
            "or model.load_state_dict(safetensors.torch.load_file(path))",
        )
    version = metadata.get("flowdl.format_version")
    if not isinstance(version, str) or not version.isdigit():
        raise _damaged(where, f"its format version is unreadable ({version!r})")
    if int(version) > FORMAT_VERSION:
        raise CheckpointError(
            f"this checkpoint was written in format version {version}, newer than this "
            f"flowdl reads ({FORMAT_VERSION})",
            path=where,
            expected=f"format version {FORMAT_VERSION} or older",
            received=f"format version {version}",
            fix="upgrade flowdl (pip install -U flowdl)",
        )
    if int(version) < 1:
        raise _damaged(where, f"format version {version} does not exist")
    return metadata


def _check_size(data: bytes, header: dict[str, Any], where: str) -> None:
    """The data the header describes ends where the file ends."""
    ends = [
        entry["data_offsets"][1]
        for name, entry in header.items()
        if name != "__metadata__"
        and isinstance(entry, dict)
        and isinstance(entry.get("data_offsets"), list)
        and len(entry["data_offsets"]) == 2
        and isinstance(entry["data_offsets"][1], int)
    ]
    length = int.from_bytes(data[:8], "little")
    need = 8 + length + max(ends, default=0)
    if need > len(data):
        raise _truncated(where, f"the header describes {need} bytes, the file has {len(data)}")


def _verify_checksum(data: bytes, metadata: dict[str, Any], where: str) -> None:
    recorded = metadata.get("flowdl.checksum")
    if not (isinstance(recorded, str) and len(recorded) == 64 and _is_hex(recorded)):
        raise _damaged(where, f"its checksum is unreadable ({recorded!r})")
    try:
        start, end = _checksum_span(data, recorded)
    except ValueError as error:
        raise _damaged(where, str(error)) from error
    actual = hashlib.sha256(data[:start] + _PLACEHOLDER.encode() + data[end:]).hexdigest()
    if actual != recorded:
        raise _damaged(
            where,
            "its content does not match its checksum: bytes changed after it was written",
            expected=f"SHA-256 {recorded}",
            received=f"SHA-256 {actual}",
        )


def _checksum_span(data: bytes, digest: str) -> tuple[int, int]:
    """Where `digest` sits in the header; it must occur there exactly once."""
    length = int.from_bytes(data[:8], "little")
    header = data[8 : 8 + length]
    needle = f'"flowdl.checksum":"{digest}"'.encode()
    if header.count(needle) != 1:
        raise ValueError("its checksum is not where fl.save_checkpoint puts it")
    start = 8 + header.index(needle) + len(needle) - 65
    return start, start + 64


def _document(metadata: dict[str, Any], where: str) -> dict[str, Any]:
    try:
        document = json.loads(metadata["flowdl.checkpoint"])
    except (KeyError, TypeError, ValueError) as error:
        raise _damaged(where, "its flowdl metadata is missing or not JSON") from error
    if not isinstance(document, dict):
        raise _damaged(where, "its flowdl metadata is not a JSON object")
    return document


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


def _foreign_kind(data: bytes) -> str | None:
    if data.startswith(b"PK\x03\x04"):
        return "a zip archive (torch.save writes these)"
    if data[:1] == b"\x80" and data[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05"):
        return "a Python pickle (torch.save's legacy format)"
    if data.startswith(b"\x1f\x8b"):
        return "a gzip-compressed file"
    if len(data) == 0:
        return "an empty file"
    return None


def _foreign_fix(kind: str) -> str:
    if "pickle" in kind or "zip archive" in kind:
        return (
            "flowdl never unpickles (loading a pickle can run code); load it with "
            "torch.load(path, weights_only=True) if you trust it, then "
            "fl.save_checkpoint(...) to convert it"
        )
    if "gzip" in kind:
        return "decompress it first (gunzip); fl.save_checkpoint writes uncompressed files"
    return "the file is empty: the save that wrote it did not finish; use an older checkpoint"


def _truncated(where: str, detail: str) -> CheckpointError:
    return CheckpointError(
        "the checkpoint is truncated",
        path=where,
        received=detail,
        fix="the file was cut short (an interrupted copy or a full disk); use another copy",
    )


def _damaged(
    where: str, detail: str, expected: str | None = None, received: str | None = None
) -> CheckpointError:
    return CheckpointError(
        f"the checkpoint is damaged: {detail}",
        path=where,
        expected=expected,
        received=received,
        fix="the file changed after it was saved (a bad disk, an interrupted copy, an edit); "
        "use another copy",
    )
