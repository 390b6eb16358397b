"""Writing a checkpoint file as a stream: header first, then each tensor's bytes in turn.

The safetensors format needs only each tensor's dtype, shape and byte range before the
data, and those are known without touching the data. So the header is written with
the checksum zeroed, each tensor's bytes are written straight from its memory (a CPU
tensor that is contiguous is not copied; another is copied alone, once) while the
checksum is updated, and the checksum's digits are then written over the zeros. The
whole goes through `flowdl._files.writing_atomically`: fsynced, then renamed over the
path, so a crash leaves the old file or the new one.
"""

from __future__ import annotations

import json
import os
from typing import Any

import torch
from torch import Tensor

from flowdl._checkpoint import layout
from flowdl._checkpoint.errors import CheckpointError
from flowdl._files import writing_atomically


def write_checkpoint(
    path: str | os.PathLike[str], tensors: dict[str, Tensor], document: dict[str, Any]
) -> None:
    """Write `tensors` (stored names to tensors) and `document` to `path`, atomically.

    Raises:
        CheckpointError: a tensor's dtype cannot be stored in safetensors.
        OSError: the file could not be written; an existing file is left as it was.
    """
    stored, aliases = _deduplicate(tensors)
    # Wider elements first, as safetensors does: every tensor then starts at a multiple
    # of its element size (the data starts at a multiple of 8), so it can be mapped.
    stored = dict(sorted(stored.items(), key=lambda item: -item[1].element_size()))
    entries: dict[str, Any] = {}
    offset = 0
    for name, tensor in stored.items():
        dtype = layout.NAMES.get(tensor.dtype)
        if dtype is None:
            raise CheckpointError(
                f"the tensor {name!r} has the dtype {tensor.dtype}, which safetensors cannot store",
                path=str(path),
                expected=f"one of {', '.join(str(d) for d in layout.NAMES)}",
                received=str(tensor.dtype),
                fix="convert it to a supported dtype before saving",
            )
        size = tensor.numel() * tensor.element_size()
        entries[name] = {"dtype": dtype, "shape": list(tensor.shape),
                         "data_offsets": [offset, offset + size]}  # fmt: skip
        offset += size
    blank = layout.placeholder(layout.FORMAT_VERSION)
    metadata = {
        "format": layout.FORMAT,
        "flowdl.format_version": str(layout.FORMAT_VERSION),
        "flowdl.checkpoint": json.dumps(
            {**document, "aliases": aliases}, separators=(",", ":"), allow_nan=False
        ),
        "flowdl.checksum": blank,
    }
    text = json.dumps({"__metadata__": metadata, **entries}, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # safetensors aligns the data to 8 bytes
    raw = len(text).to_bytes(8, "little") + text
    needle = f'"flowdl.checksum":"{blank}"'.encode()
    where = raw.index(needle) + len(needle) - len(blank) - 1
    hasher = layout.ChunkedHasher(raw)
    with writing_atomically(path) as file:
        file.write(raw)
        for tensor in stored.values():
            data = _bytes_of(tensor)
            file.write(data)
            hasher.update(data)
            del data
        file.seek(where)
        file.write(hasher.hexdigest().encode())


def _bytes_of(tensor: Tensor) -> memoryview:
    """The bytes of `tensor` in safetensors' layout (C order, little-endian)."""
    tensor = tensor.detach()
    if tensor.device.type != "cpu":
        tensor = tensor.to("cpu")
    tensor = tensor.resolve_conj().resolve_neg().contiguous()
    if tensor.numel() == 0:
        return memoryview(b"")
    array: Any = tensor.reshape(-1).view(torch.uint8).numpy()
    return memoryview(array)


def _deduplicate(tensors: dict[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, str]]:
    """Store each tensor once: the same view under another name is an alias.

    Other views of one storage are stored as separate copies (written one by one).
    """
    by_view: dict[tuple[Any, ...], str] = {}
    stored: dict[str, Tensor] = {}
    aliases: dict[str, str] = {}
    for name, tensor in tensors.items():
        if tensor.numel() > 0:
            view = (
                str(tensor.device),
                tensor.untyped_storage().data_ptr(),
                tensor.storage_offset(),
                tuple(tensor.shape),
                tensor.stride(),
                tensor.dtype,
            )
            if view in by_view:
                aliases[name] = by_view[view]
                continue
            by_view[view] = name
        stored[name] = tensor
    return stored, aliases
