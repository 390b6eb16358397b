"""The JSON half of a sharded checkpoint: ``flowdl.json``, written by rank 0, checked on load.

A sharded checkpoint is a folder. Its tensors are safetensors files written by
`torch.distributed.checkpoint` (one per rank that holds data); everything else —
the format version, the model's structural hash, its state-dict keys, the
optimizer's type, hyperparameters and non-tensor state, the epoch and the extras —
is this JSON document. Loading reads it with `json.loads` and checks every field's
type before anything else happens: no field of the file is ever executed or
unpickled.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from flowdl._checkpoint.errors import CheckpointError
from flowdl._version import __version__

FORMAT = "flowdl.sharded-checkpoint"
VERSION = 1
DOCUMENT = "flowdl.json"
"""The document's name inside the checkpoint folder."""
OPTIMIZER_PREFIX = "optimizer/"
"""An optimizer tensor is stored as ``optimizer/<parameter's state-dict key>/<name>``."""
MAX_BYTES = 256 * 2**20
"""The largest document read (it names every tensor, not their data)."""

_PLAIN = (bool, int, float, str, type(None))


def optimizer_key(parameter: str, name: str) -> str:
    """The stored name of one tensor of one parameter's optimizer state."""
    return f"{OPTIMIZER_PREFIX}{parameter}/{name}"


def plain_json(value: Any, where: str, path: str) -> Any:
    """`value` as JSON (tuples become lists), or a `CheckpointError` naming `where`."""
    if isinstance(value, float) and not math.isfinite(value):
        return {"float": repr(value)}  # JSON has no inf/nan; read back by `from_json`
    if isinstance(value, _PLAIN):
        return value
    if isinstance(value, (list, tuple)):
        return [plain_json(item, f"{where}[{i}]", path) for i, item in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        if set(value) == {"float"}:
            raise _unstorable(where, path, "a dict whose only key is 'float' (reserved)")
        return {key: plain_json(item, f"{where}[{key!r}]", path) for key, item in value.items()}
    raise _unstorable(where, path, f"a {type(value).__qualname__}")


def from_json(value: Any) -> Any:
    """The inverse of `plain_json` (lists stay lists)."""
    if isinstance(value, dict):
        if set(value) == {"float"} and isinstance(value["float"], str):
            return float(value["float"])
        return {key: from_json(item) for key, item in value.items()}
    if isinstance(value, list):
        return [from_json(item) for item in value]
    return value


def _unstorable(where: str, path: str, received: str) -> CheckpointError:
    return CheckpointError(
        f"{where} cannot be stored in a sharded checkpoint",
        path=path,
        expected="numbers, strings, booleans, None, and lists, tuples and dicts (string "
        "keys) of those",
        received=received,
        fix="convert it to one of those (tensors of the model and optimizer are stored "
        "as tensors), or keep it elsewhere",
    )


def new_document(
    model_type: str,
    structural_hash: str,
    world_size: int,
    model_keys: list[str],
    shapes: dict[str, list[int]],
    optimizer: dict[str, Any] | None,
    epoch: int | None,
    extra: dict[str, Any],
) -> dict[str, Any]:
    """The document `save_sharded_checkpoint` writes (`shapes`: every stored tensor's
    whole shape, which no single rank's file shows)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "flowdl_version": __version__,
        "torch_version": torch.__version__,
        "structural_hash": structural_hash,
        "model_type": model_type,
        "world_size": world_size,
        "epoch": epoch,
        "extra": extra,
        "model": model_keys,
        "shapes": shapes,
        "optimizer": optimizer,
    }


def read_document(folder: Path) -> dict[str, Any]:
    """The checked document of the sharded checkpoint in `folder`.

    Raises:
        CheckpointError: `folder` is not a sharded checkpoint, or its document is
            damaged or of another version; the message names the field.
    """
    where = str(folder)
    file = folder / DOCUMENT
    if not folder.is_dir() or not file.is_file():
        received = (
            "no such folder"
            if not folder.exists()
            else "a file, not a folder"
            if not folder.is_dir()
            else f"a folder without {DOCUMENT}"
        )
        fix = (
            "load it with fl.load_checkpoint (a single-file checkpoint)"
            if folder.is_file()
            else "pass the folder given to fl.save_sharded_checkpoint"
        )
        previous = folder.parent / f".{folder.name}.flowdl-replaced"
        if not folder.exists() and (previous / DOCUMENT).is_file():
            fix = (
                f"a save was interrupted while it swapped folders: the previous checkpoint "
                f"is {previous}; rename it to {folder.name}"
            )
        raise CheckpointError(
            "there is no sharded checkpoint at this path",
            path=where,
            expected=f"a folder written by fl.save_sharded_checkpoint (holding {DOCUMENT})",
            received=received,
            fix=fix,
        )
    with open(file, "rb") as handle:  # a regular file (checked above): never blocks
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise _damaged(where, f"{DOCUMENT} is larger than {MAX_BYTES} bytes")
    try:
        document = json.loads(data)
    except (ValueError, RecursionError) as error:
        raise _damaged(where, f"{DOCUMENT} is not JSON ({type(error).__name__})") from None
    _check(document, where)
    return document  # type: ignore[no-any-return]


def _damaged(where: str, received: str) -> CheckpointError:
    return CheckpointError(
        "the sharded checkpoint is damaged",
        path=where,
        expected=f"{DOCUMENT} as fl.save_sharded_checkpoint writes it",
        received=received,
        fix="save the checkpoint again, or restore the folder from a copy",
    )


def _check(document: Any, where: str) -> None:
    """Every field the loader reads exists and has its type (nothing else is trusted)."""

    def need(value: Any, kind: type | tuple[type, ...], field: str) -> Any:
        if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
            raise _damaged(where, f"the field {field} is a {type(value).__name__}")
        return value

    need(document, dict, "(the document)")
    if document.get("format") != FORMAT:
        raise _damaged(where, f"the format is {str(document.get('format'))[:80]!r}")
    version = need(document.get("version"), int, "version")
    if version != VERSION:
        raise CheckpointError(
            f"the sharded checkpoint has format version {str(version)[:20]}; this flowdl "
            f"reads version {VERSION}",
            path=where,
            fix="load it with the flowdl version that wrote it "
            f"({str(document.get('flowdl_version'))[:40]})",
        )
    for field in ("flowdl_version", "torch_version", "structural_hash", "model_type"):
        need(document.get(field), str, field)
    need(document.get("world_size"), int, "world_size")
    if document.get("epoch") is not None:
        need(document["epoch"], int, "epoch")
    need(document.get("extra"), dict, "extra")
    for key in need(document.get("model"), list, "model"):
        need(key, str, "model[...]")
    for key, shape in need(document.get("shapes"), dict, "shapes").items():
        for size in need(shape, list, f"shapes[{key!r}]"):
            need(size, int, f"shapes[{key!r}][...]")
    optimizer = document.get("optimizer")
    if optimizer is None:
        return
    need(optimizer, dict, "optimizer")
    need(optimizer.get("type"), str, "optimizer.type")
    for group in need(optimizer.get("param_groups"), list, "optimizer.param_groups"):
        need(group, dict, "optimizer.param_groups[...]")
        for name in need(group.get("params"), list, "optimizer.param_groups[...].params"):
            need(name, str, "optimizer.param_groups[...].params[...]")
    for field in ("tensors", "values"):
        for parameter, names in need(optimizer.get(field), dict, f"optimizer.{field}").items():
            need(names, list if field == "tensors" else dict, f"optimizer.{field}[{parameter!r}]")
            for name in names:
                need(name, str, f"optimizer.{field}[{parameter!r}][...]")
