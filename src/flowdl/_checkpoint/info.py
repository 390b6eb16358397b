"""`fl.checkpoint_info`: what a checkpoint holds, read without loading it into anything."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from flowdl._checkpoint.encoding import decode
from flowdl._checkpoint.errors import CheckpointError
from flowdl._checkpoint.reader import open_checkpoint


@dataclass(frozen=True)
class CheckpointInfo:
    """A checkpoint's metadata.

    Attributes:
        format_version: the version of the file layout.
        flowdl_version: the flowdl that wrote it.
        torch_version: the PyTorch it was written with.
        structural_hash: the saved model's `fl.structural_hash`.
        model_type: the saved model's class name (``"Graph"`` for a graph).
        epoch: the ``epoch=`` given at save, or ``None``.
        extra: the extras given at save.
        tensors: the model's state-dict keys, in order, with their shape and dtype
            (as safetensors names it: ``"F32"``, ``"I64"``, ...).
        optimizer: the class name of the saved optimizer, or ``None``.
        scheduler: the class name of the saved scheduler, or ``None``.
    """

    format_version: int
    flowdl_version: str
    torch_version: str
    structural_hash: str
    model_type: str
    epoch: int | None
    extra: dict[str, Any] = field(default_factory=dict)
    tensors: dict[str, tuple[tuple[int, ...], str]] = field(default_factory=dict)
    optimizer: str | None = None
    scheduler: str | None = None


def checkpoint_info(path: str | os.PathLike[str], *, verify: bool = True) -> CheckpointInfo:
    """Read a checkpoint's metadata and tensor names without loading it into a model.

    Args:
        path: a file written by `save_checkpoint`.
        verify: read the whole file and check its checksum (the default), so the
            answer is trustworthy; ``False`` reads only the header, which is fast for
            a large file but does not notice damaged tensor data.

    Returns:
        a `CheckpointInfo`.

    Raises:
        CheckpointError: the file is missing, not a flowdl checkpoint, truncated or
            damaged.

    Example:
        >>> import tempfile, torch, flowdl as fl
        >>> path = tempfile.mkdtemp() + "/linear.safetensors"
        >>> fl.save_checkpoint(path, torch.nn.Linear(2, 3), epoch=1)
        >>> info = fl.checkpoint_info(path)
        >>> info.model_type, info.epoch, info.tensors["weight"]
        ('Linear', 1, ((3, 2), 'F32'))
    """
    checkpoint = open_checkpoint(path, verify=verify)
    if checkpoint.plain:
        names = list(checkpoint.entries)
        raise CheckpointError(
            "this safetensors file was not written by fl.save_checkpoint (no flowdl metadata)",
            path=str(path),
            expected="__metadata__ with format 'flowdl.checkpoint'",
            received=f"a safetensors file with {len(names)} tensors"
            + (f" ({', '.join(names[:3])}{', ...' if len(names) > 3 else ''})" if names else ""),
            fix="fl.load_checkpoint(path, model) loads plain weights into a model whose "
            "state_dict matches; safetensors.safe_open(path, 'pt') lists them",
        )
    document = checkpoint.document
    tensors = {}
    for key in document["model"]["tensors"]:
        entry = checkpoint.entry(checkpoint.model_name(key))
        tensors[key] = (entry.shape, entry.dtype)
    return CheckpointInfo(
        format_version=checkpoint.version,
        flowdl_version=document["flowdl_version"],
        torch_version=document["torch_version"],
        structural_hash=document["structural_hash"],
        model_type=document["model_type"],
        epoch=document["epoch"],
        extra=decode(document["extra"], {}),
        tensors=tensors,
        optimizer=(document["optimizer"] or {}).get("type"),
        scheduler=(document["scheduler"] or {}).get("type"),
    )
