"""Reading a sharded checkpoint: check it against the model and optimizer, then read its shards.

`torch.distributed.checkpoint` is imported on first use (a second to import).
`load_state` compares the checkpoint (its ``flowdl.json`` and the tensors' names,
shapes and dtypes from the safetensors headers) with the model's and optimizer's
state dicts as `torch.distributed.checkpoint.state_dict` gives them (sharded like
the model), raises a `CheckpointError` on any difference, then reads the shards into
new tensors laid out like the model's: the caller copies them in only once
everything was read.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from flowdl._checkpoint import sharded_document as document_
from flowdl._checkpoint.errors import CheckpointError, check_component
from flowdl._checkpoint.hashing import structural_hash
from flowdl._checkpoint.report import LISTED, LoadReport, Mismatch, dtype_kind, refuse_mismatch

__all__ = ["load_state", "single_process_quietly"]


@contextlib.contextmanager
def single_process_quietly() -> Iterator[None]:
    """Without DCP's warning that it saves or loads in one process (flowdl means to)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def load_state(
    folder: Path,
    document: dict[str, Any],
    target: nn.Module,
    model_state: dict[str, Any],
    optimizer: Optimizer | None,
    optimizer_state: dict[str, Any] | None,
    strict: bool,
    no_dist: bool,
) -> tuple[dict[str, Tensor], dict[str, Any] | None, LoadReport]:
    """The model's new tensors, the optimizer's new state dict, and the report.

    Args:
        folder: the checkpoint folder; `document`: its checked ``flowdl.json``.
        target: the unwrapped model (for its structural hash).
        model_state: ``get_model_state_dict(model)``.
        optimizer: the optimizer to load, or ``None``.
        optimizer_state: ``get_optimizer_state_dict(model, optimizer)``, or ``None``.
        strict: as in `load_sharded_checkpoint`.
        no_dist: read without the process group (one process reads every shard).

    Raises:
        CheckpointError: anything does not match, or a shard is missing or damaged.
    """
    from torch.distributed.checkpoint.hf_storage import HuggingFaceStorageReader
    from torch.distributed.checkpoint.state_dict_loader import load

    where = str(folder)
    stored = _stored_tensors(folder, where)
    saved_keys = document["model"]
    for key in saved_keys:
        _check_stored(key, stored, document["shapes"], where)
    report = _match(model_state, saved_keys, stored, document, structural_hash(target))
    if strict:
        refuse_mismatch(
            report,
            hashes_match=report.hash_matched,
            model_type=document["model_type"],
            expected_hash=f"{structural_hash(target)} (this {type(target).__name__})",
            saved_hash=document["structural_hash"],
            where=where,
        )
    targets = {key: model_state[key] for key in report.loaded}
    plan = None
    if optimizer is not None and optimizer_state is not None:
        plan = _optimizer_plan(document, optimizer, optimizer_state, stored, where)
        targets.update(plan[0])
    buffers = {key: torch.empty_like(value) for key, value in targets.items()}
    try:
        with single_process_quietly():
            reader = HuggingFaceStorageReader(where)
            load(buffers, storage_reader=reader, no_dist=no_dist)
    except Exception as error:  # DCP's own errors: a shard damaged or changed meanwhile
        raise _damaged(where, f"{type(error).__name__}: {str(error)[:300]}") from error
    values = {key: buffers[key] for key in report.loaded}
    optimizer_values = None
    if plan is not None and optimizer_state is not None:
        optimizer_values = _optimizer_values(plan[1], buffers, document, optimizer_state)
    return values, optimizer_values, report


def _stored_tensors(folder: Path, where: str) -> dict[str, Any]:
    """Each stored tensor's DCP metadata (size, dtype, chunks), from the safetensors headers."""
    from torch.distributed.checkpoint.hf_storage import HuggingFaceStorageReader

    try:
        metadata = HuggingFaceStorageReader(where).read_metadata()
    except Exception as error:  # safetensors' and DCP's errors on a damaged header
        raise _damaged(where, f"{type(error).__name__}: {str(error)[:300]}") from error
    return dict(metadata.state_dict_metadata)


def _check_stored(
    key: str, stored: dict[str, Any], shapes: dict[str, list[int]], where: str
) -> None:
    """`key` is stored with its saved shape, and its chunks cover the whole tensor."""
    entry = stored.get(key)
    shape = shapes.get(key)
    if entry is None or shape is None:
        raise _damaged(where, f"no shard holds {key!r}")
    covered = sum(math.prod(chunk.sizes) for chunk in entry.chunks)
    if list(entry.size) != shape or covered != math.prod(shape):
        raise _damaged(
            where,
            f"the shards hold {covered} of the {math.prod(shape)} elements of {key!r} "
            "(a shard file is missing)",
        )


def _damaged(where: str, received: str) -> CheckpointError:
    return CheckpointError(
        "the sharded checkpoint is damaged or incomplete",
        path=where,
        expected="every rank's safetensors file, as fl.save_sharded_checkpoint wrote them",
        received=received,
        fix="save the checkpoint again, or restore the folder from a copy",
    )


def _match(
    model_state: dict[str, Any],
    saved_keys: list[str],
    stored: dict[str, Any],
    document: dict[str, Any],
    model_hash: str,
) -> LoadReport:
    saved = set(saved_keys)
    loaded, missing, mismatched = [], [], []
    for key, current in model_state.items():
        entry = stored.get(key)
        if key not in saved or not isinstance(current, Tensor) or entry is None:
            missing.append(key)
            continue
        dtype = entry.properties.dtype
        if tuple(entry.size) != tuple(current.shape) or dtype_kind(dtype) != dtype_kind(
            current.dtype
        ):
            shapes = tuple(entry.size), tuple(current.shape)
            mismatched.append(Mismatch(key, *shapes, dtype, current.dtype))
            continue
        loaded.append(key)
    return LoadReport(
        loaded=tuple(loaded),
        missing=tuple(missing),
        unexpected=tuple(key for key in saved_keys if key not in model_state),
        mismatched=tuple(mismatched),
        hash_matched=document["structural_hash"] == model_hash,
        epoch=document["epoch"],
        extra=document_.from_json(document["extra"]),
    )


def _optimizer_plan(
    document: dict[str, Any],
    optimizer: Optimizer,
    template: dict[str, Any],
    stored: dict[str, Any],
    where: str,
) -> tuple[dict[str, Tensor], dict[str, list[str]]]:
    """The optimizer tensors to read (laid out like `template`'s), checked against the file."""
    kind = type(optimizer).__qualname__
    saved = check_component(document["optimizer"], optimizer, "optimizer", "create a {}", where)
    saved_groups = [group["params"] for group in saved["param_groups"]]
    groups = [list(group["params"]) for group in template["param_groups"]]
    if saved_groups != groups:
        raise CheckpointError(
            "the optimizer's parameter groups differ from the saved ones",
            path=where,
            expected=f"{len(saved_groups)} group(s) of the saved parameters, in order: "
            + "; ".join(", ".join(g[:LISTED]) for g in saved_groups)[:400],
            received=f"{len(groups)} group(s): "
            + "; ".join(", ".join(g[:LISTED]) for g in groups)[:400],
            fix=f"create the {kind} over the same parameters, in the same groups and order",
        )
    names: dict[str, list[str]] = saved["tensors"]
    known = {name for group in groups for name in group}
    targets: dict[str, Tensor] = {}
    for parameter, tensor_names in names.items():
        current = template["state"].get(parameter, {})
        for name in tensor_names:
            key = document_.optimizer_key(parameter, name)
            value = current.get(name)
            _check_stored(key, stored, document["shapes"], where)
            entry = stored[key]
            if (
                parameter not in known
                or not isinstance(value, Tensor)
                or tuple(entry.size) != tuple(value.shape)
            ):
                raise CheckpointError(
                    f"the {kind}'s state {name!r} of {parameter!r} does not fit the saved one",
                    path=where,
                    expected=f"a tensor of shape {list(entry.size)}",
                    received="no such state"
                    if not isinstance(value, Tensor)
                    else f"shape {list(value.shape)}",
                    fix=f"create the {kind} with the saved options, over the same parameters",
                )
            targets[key] = value
    return targets, names


def _optimizer_values(
    names: dict[str, list[str]],
    buffers: dict[str, Tensor],
    document: dict[str, Any],
    template: dict[str, Any],
) -> dict[str, Any]:
    """The optimizer state dict to set: the read tensors, the JSON values, the groups."""
    saved = document["optimizer"]
    state: dict[str, dict[str, Any]] = {}
    for parameter, tensor_names in names.items():
        for name in tensor_names:
            state.setdefault(parameter, {})[name] = buffers[
                document_.optimizer_key(parameter, name)
            ]
    for parameter, values in saved["values"].items():
        state.setdefault(parameter, {}).update(document_.from_json(values))
    groups = []
    for group, current in zip(saved["param_groups"], template["param_groups"], strict=True):
        restored = document_.from_json(group)
        for key, value in restored.items():  # JSON has no tuples: Adam's betas were one
            if isinstance(current.get(key), tuple) and isinstance(value, list):
                restored[key] = tuple(value)
        restored["params"] = list(current["params"])
        groups.append(restored)
    return {"state": state, "param_groups": groups}
