"""Reading a safetensors header safely: bounded, every entry checked, nothing else read.

`read_header` opens the file, reads its 8-byte length and its JSON header (at most
`MAX_HEADER` bytes), and checks every tensor entry (a known dtype, a shape of
non-negative integers, byte offsets that match the shape and tile the data exactly up
to the end of the file) before anyone reads a tensor. A flowdl checkpoint is told from
a plain safetensors file of weights by its ``__metadata__`` (see
`flowdl._checkpoint.layout`). Anything wrong is a `CheckpointError` that names the file.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

from flowdl._checkpoint.errors import CheckpointError
from flowdl._checkpoint.layout import DTYPES, FORMAT, FORMAT_VERSION, MAX_HEADER, element_size

_MAX_DIMENSIONS = 64
_MAX_INT = 2**63


@dataclass(frozen=True)
class Entry:
    """A stored tensor: its safetensors dtype name, shape and byte range in the data."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


@dataclass(frozen=True)
class Header:
    """A checked safetensors header.

    Attributes:
        raw: the 8 length bytes and the header bytes, as in the file.
        metadata: the ``__metadata__`` strings (empty when there are none).
        entries: every stored tensor by name.
        size: the file's size in bytes.
        flowdl: whether the metadata says this is a flowdl checkpoint.
    """

    raw: bytes
    metadata: dict[str, str]
    entries: dict[str, Entry]
    size: int
    flowdl: bool


def read_header(path: str | os.PathLike[str]) -> Header:
    """Read and check the header of the safetensors file at `path`.

    Raises:
        CheckpointError: the file is missing, foreign, truncated, or its header is
            damaged or describes data the file does not hold.
    """
    where = str(path)
    try:
        with open(path, "rb") as file:
            size = os.fstat(file.fileno()).st_size
            head = file.read(16)
            length = int.from_bytes(head[:8], "little") if len(head) >= 8 else 0
            if not (head[8:9] == b"{" and 2 <= length <= MAX_HEADER):
                _refuse_start(head, where)
            if 8 + length > size:
                raise truncated(where, f"the header needs {length} bytes, the file has {size - 8}")
            file.seek(0)
            raw = file.read(8 + length)
    except OSError as error:
        raise unreadable(where, error) from error
    header = _parse(raw[8:], where, "its header")
    if not isinstance(header, dict):
        raise damaged(where, "its header is not a JSON object")
    metadata = _metadata(header.pop("__metadata__", {}), where)
    entries = {name: _entry(name, value, where) for name, value in header.items()}
    _check_tiling(entries, size - len(raw), where)
    return Header(raw, metadata, entries, size, metadata.get("format") == FORMAT)


def parse_json(text: str, where: str, what: str) -> Any:
    """`text` as JSON; anything unreadable (nesting too deep, a huge number) is damage."""
    return _parse(text.encode("utf-8"), where, what)


def _parse(data: bytes, where: str, what: str) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except RecursionError:
        raise damaged(where, f"{what} is nested too deeply to be flowdl's") from None
    except (UnicodeDecodeError, ValueError) as error:
        raise damaged(where, f"{what} is not valid JSON ({_short(str(error))})") from None


def _metadata(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise damaged(where, "its __metadata__ is not a JSON object of strings")
    return value


def _entry(name: str, value: Any, where: str) -> Entry:
    problem = f"the header's entry of tensor {_short(repr(name))} "
    if not isinstance(value, dict) or set(value) != {"dtype", "shape", "data_offsets"}:
        raise damaged(where, problem + "is not {dtype, shape, data_offsets}")
    dtype, shape, offsets = value["dtype"], value["shape"], value["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise damaged(
            where, problem + f"has an unknown dtype {_short(repr(dtype))}",
            expected=f"one of {', '.join(DTYPES)}",
        )  # fmt: skip
    if not (isinstance(shape, list) and len(shape) <= _MAX_DIMENSIONS and all(
        _is_int(d) and 0 <= d < _MAX_INT for d in shape
    )):  # fmt: skip
        raise damaged(where, problem + f"has a shape that is not a list of sizes: {_short(shape)}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(
        _is_int(o) and 0 <= o < _MAX_INT for o in offsets
    ) and offsets[0] <= offsets[1]):  # fmt: skip
        raise damaged(where, problem + f"has byte offsets that are not [begin, end]: {offsets!r}")
    nbytes = math.prod(shape) * element_size(dtype)
    if offsets[1] - offsets[0] != nbytes:
        raise damaged(
            where,
            problem + "has byte offsets that do not fit its shape and dtype",
            expected=f"{nbytes} bytes for {dtype} {shape}",
            received=f"{offsets[1] - offsets[0]} bytes",
        )
    return Entry(dtype, tuple(shape), offsets[0], offsets[1])


def _check_tiling(entries: dict[str, Entry], data_size: int, where: str) -> None:
    """The tensors' byte ranges follow one another from 0 to the end of the file."""
    position = 0
    for entry in sorted(entries.values(), key=lambda e: (e.begin, e.end)):
        if entry.begin != position:
            raise damaged(where, "the header's byte offsets overlap or leave gaps")
        position = entry.end
    if position > data_size:
        raise truncated(where, f"the header describes {position} bytes of data, the file has "
                        f"{data_size}")  # fmt: skip
    if position < data_size:
        raise damaged(where, f"{data_size - position} bytes follow the data the header describes")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _refuse_start(head: bytes, where: str) -> None:
    foreign = _foreign_kind(head)
    if foreign is not None:
        raise CheckpointError(
            f"this is not a flowdl checkpoint: it looks like {foreign}",
            path=where,
            expected="a file written by fl.save_checkpoint (safetensors with flowdl metadata)",
            received=foreign,
            fix=_foreign_fix(foreign),
        )
    if len(head) < 8:
        raise truncated(where, f"the file has {len(head)} bytes, fewer than a header's 8")
    raise CheckpointError(
        "this is not a flowdl checkpoint: it does not start with a safetensors header",
        path=where,
        expected="8 bytes of header size, then a JSON header starting with '{'",
        received=f"first bytes {head!r}",
        fix="pass a file written by fl.save_checkpoint",
    )


def check_version(metadata: dict[str, str], where: str) -> int:
    """The format version a flowdl checkpoint's metadata names, checked."""
    version = metadata.get("flowdl.format_version")
    if not isinstance(version, str) or not (1 <= len(version) <= 6 and version.isdecimal()):
        raise damaged(where, f"its format version is unreadable ({_short(repr(version))})")
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
        raise damaged(where, f"format version {version} does not exist")
    return int(version)


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


def unreadable(where: str, error: OSError) -> CheckpointError:
    """The file cannot be opened or read."""
    if isinstance(error, FileNotFoundError):
        problem, fix = "there is no checkpoint at this path", "check the path"
    elif isinstance(error, IsADirectoryError):
        problem, fix = "the path is a directory, not a checkpoint file", "name the file"
    else:
        problem, fix = "the checkpoint cannot be read", "check the file's permissions"
    received = f"{type(error).__name__}: {error}"
    return CheckpointError(problem, path=where, received=received, fix=fix)


def truncated(where: str, detail: str) -> CheckpointError:
    """The file ends before what its header describes."""
    return CheckpointError(
        "the checkpoint is truncated",
        path=where,
        received=detail,
        fix="the file was cut short (an interrupted copy or a full disk); use another copy",
    )


def damaged(
    where: str, detail: str, expected: str | None = None, received: str | None = None
) -> CheckpointError:
    """The file's content is not what fl.save_checkpoint writes."""
    return CheckpointError(
        f"the checkpoint is damaged: {detail}",
        path=where,
        expected=expected,
        received=received,
        fix="the file changed after it was saved (a bad disk, an interrupted copy, an edit); "
        "use another copy",
    )
