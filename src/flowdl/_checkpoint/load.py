"""`fl.load_checkpoint`: check everything, then restore model, optimizer and scheduler."""

from __future__ import annotations

import contextlib
import os
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from flowdl._checkpoint import container
from flowdl._checkpoint import optimizer as optimizer_state
from flowdl._checkpoint import scheduler as scheduler_state
from flowdl._checkpoint.encoding import decode
from flowdl._checkpoint.errors import CheckpointError
from flowdl._checkpoint.hashing import structural_hash, unwrap
from flowdl._checkpoint.report import LoadReport, Mismatch
from flowdl._checkpoint.save import MODEL_PREFIX
from flowdl._log import logger

_LISTED = 6


def load_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: Optimizer | None = None,
    scheduler: scheduler_state.Stateful | None = None,
    strict: bool = True,
) -> LoadReport:
    """Load a checkpoint written by `save_checkpoint` into a model (and optimizer, scheduler).

    Everything is checked before anything is changed: the file (a flowdl checkpoint,
    complete, its checksum intact), the model's structural hash and tensors, the
    optimizer's type and parameters, the scheduler's type. If any check fails, a
    `CheckpointError` is raised and the model, optimizer and scheduler are exactly
    as they were. Nothing is ever unpickled: the file holds JSON and raw tensors.

    Tensors are copied into the model's own tensors (as `load_state_dict` does):
    they keep the model's device and dtype, and tied weights stay tied. A dtype
    that differs within a kind (a float64 checkpoint into a float32 model) is cast
    to the model's dtype; a change of kind (floating point to integer, say) counts
    as a mismatch. Optimizer state moves to its parameters' device as PyTorch's
    `Optimizer.load_state_dict` does, and its hyperparameters (the learning rate
    among them) replace those the optimizer was created with.

    A wrapped model (`DistributedDataParallel`, `DataParallel`, `torch.compile`) is
    loaded through the module it wraps: checkpoints never carry the ``module.``
    prefix, so a file saved from a wrapped model loads into an unwrapped one and the
    other way round. Under `torch.distributed`, every rank may load the same file.

    Args:
        path: a file written by `save_checkpoint`.
        model: the module to load into; its structural hash is checked against the
            checkpoint's. Pass a sub-model (``g.subgraph("encoder")``) to load a
            checkpoint saved from that sub-model.
        optimizer: an optimizer over the same parameters, in the same order, as the
            saved one; its state is restored.
        scheduler: a scheduler of the saved type; its state is restored.
        strict: ``True``: the structural hash and every tensor must match, or
            nothing loads. ``False``: load the tensors whose name and shape match,
            leave the others as they are, and list them in the report (the
            optimizer, if given, must still fit the loaded parameters).

    Returns:
        a `LoadReport`: what was loaded, missing, unexpected and mismatched, and the
        checkpoint's epoch and extras.

    Raises:
        CheckpointError: the file is missing, not a flowdl checkpoint, truncated or
            damaged; the structural hash or the tensors do not match (``strict``);
            the optimizer or scheduler does not fit. The message says which.

    Example:
        >>> import tempfile, torch, flowdl as fl
        >>> from torch import nn
        >>> make = lambda: fl.Flow(nn.Linear(2, 3)).through(nn.ReLU()).build()
        >>> model, path = make(), tempfile.mkdtemp() + "/model.safetensors"
        >>> fl.save_checkpoint(path, model, epoch=7)
        >>> fresh = make()
        >>> report = fl.load_checkpoint(path, fresh)
        >>> report.loaded, report.epoch
        (('Linear_0.weight', 'Linear_0.bias'), 7)
        >>> torch.equal(fresh(torch.ones(1, 2)), model(torch.ones(1, 2)))
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"load_checkpoint() takes an nn.Module, received {type(model).__name__}")
    target = unwrap(model)
    report = load_into(path, target, optimizer, scheduler, strict, f"this {type(target).__name__}")
    logger("checkpoint").debug("loaded checkpoint %s: %d tensors loaded", path, len(report.loaded))
    return report


def load_into(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: Optimizer | None,
    scheduler: scheduler_state.Stateful | None,
    strict: bool,
    described: str,
) -> LoadReport:
    """`load_checkpoint` into an unwrapped `model`, which messages call `described`."""
    where = str(path)
    contents = container.read(path)
    document = contents.document
    try:
        return _load(contents, where, model, optimizer, scheduler, strict, described)
    except (KeyError, TypeError, ValueError) as error:
        if isinstance(error, CheckpointError):
            raise
        raise CheckpointError(
            "the checkpoint's metadata is not what fl.save_checkpoint writes",
            path=where,
            received=f"{type(error).__name__}: {error} (written by flowdl "
            f"{document.get('flowdl_version', '?')})",
            fix="use a checkpoint written by fl.save_checkpoint",
        ) from error


def _load(
    contents: container.Contents,
    where: str,
    model: nn.Module,
    optimizer: Optimizer | None,
    scheduler: scheduler_state.Stateful | None,
    strict: bool,
    described: str,
) -> LoadReport:
    document = contents.document
    tensors = contents.tensors
    saved_hash = document["structural_hash"]
    model_hash = structural_hash(model)
    values, objects, report = _match(document["model"], tensors, model, where)
    hash_matched = saved_hash == model_hash
    if strict and not hash_matched:
        raise CheckpointError(
            f"the checkpoint was saved from another model (a {document['model_type']}): "
            "the structural hashes differ",
            path=where,
            expected=f"structural hash {model_hash} ({described})",
            received=f"structural hash {saved_hash} (in the checkpoint)" + _differences(report),
            fix="load it into a model built like the one it was saved from; or pass "
            "strict=False to load the tensors whose names and shapes match (the report "
            "lists the rest)",
        )
    if strict and not report.complete:
        raise CheckpointError(
            "the checkpoint's tensors do not match the model's",
            path=where,
            expected="the same state-dict keys, shapes and kinds of dtype",
            received=_differences(report).strip(),
            fix="pass strict=False to load what matches (the report lists the rest)",
        )
    _check_ties(model, values, where)
    optimizer_dict = None
    if optimizer is not None:
        names = optimizer_state.parameter_names(model)
        optimizer_dict = optimizer_state.prepare(
            optimizer, document["optimizer"], tensors, names, set(report.loaded), where
        )
    scheduler_dict = None
    if scheduler is not None:
        scheduler_dict = scheduler_state.prepare(scheduler, document["scheduler"], tensors, where)
    extra = decode(document["extra"], {})
    _apply(model, values, objects, optimizer, optimizer_dict, scheduler, scheduler_dict)
    return LoadReport(
        loaded=report.loaded,
        missing=report.missing,
        unexpected=report.unexpected,
        mismatched=report.mismatched,
        hash_matched=hash_matched,
        epoch=document["epoch"],
        extra=extra,
    )


def _match(
    saved: dict[str, Any], tensors: dict[str, Tensor], model: nn.Module, where: str
) -> tuple[dict[str, Tensor], dict[str, Any], LoadReport]:
    """The model's entries the checkpoint can fill, and the report of the rest."""
    state = model.state_dict()
    saved_keys: list[str] = saved["tensors"]
    saved_set = set(saved_keys)
    saved_objects: dict[str, Any] = saved["objects"]
    values: dict[str, Tensor] = {}
    objects: dict[str, Any] = {}
    loaded: list[str] = []
    missing: list[str] = []
    mismatched: list[Mismatch] = []
    for key, current in state.items():
        if not isinstance(current, Tensor):
            if key in saved_objects:
                objects[key] = decode(saved_objects[key], tensors)
                loaded.append(key)
            else:
                missing.append(key)
            continue
        if key not in saved_set:
            missing.append(key)
            continue
        stored = tensors.get(MODEL_PREFIX + key)
        if stored is None:
            raise container._damaged(where, f"the tensor of {key!r} is missing from its data")
        if stored.shape != current.shape or _kind(stored.dtype) != _kind(current.dtype):
            shapes = tuple(stored.shape), tuple(current.shape)
            mismatched.append(Mismatch(key, *shapes, stored.dtype, current.dtype))
            continue
        values[key] = stored
        loaded.append(key)
    known = set(state)
    unexpected = [k for k in [*saved_keys, *saved_objects] if k not in known]
    report = LoadReport(tuple(loaded), tuple(missing), tuple(unexpected), tuple(mismatched))
    return values, objects, report


def _kind(dtype: torch.dtype) -> str:
    if dtype.is_complex:
        return "complex"
    if dtype.is_floating_point:
        return "floating point"
    return "boolean" if dtype == torch.bool else "integer"


def _differences(report: LoadReport) -> str:
    parts = []
    for title, items, comma in (
        ("missing from the checkpoint", list(report.missing), ", "),
        ("not in the model", list(report.unexpected), ", "),
        ("mismatched", [str(m) for m in report.mismatched], "; "),
    ):
        if items:
            shown = comma.join(items[:_LISTED]) + (comma + "..." if len(items) > _LISTED else "")
            parts.append(f"\n{title} ({len(items)}): {shown}")
    return "".join(parts) or "\nthe same tensor names and shapes (the wiring or types differ)"


def _check_ties(model: nn.Module, values: dict[str, Tensor], where: str) -> None:
    """Names that are one tensor in the model must get one value from the checkpoint."""
    groups: dict[tuple[Any, ...], list[str]] = {}
    for key, tensor in model.state_dict(keep_vars=True).items():
        if isinstance(tensor, Tensor) and tensor.numel() > 0 and key in values:
            view = (
                str(tensor.device),
                tensor.untyped_storage().data_ptr(),
                tensor.storage_offset(),
                tuple(tensor.shape),
                tensor.stride(),
            )
            groups.setdefault(view, []).append(key)
    for keys in groups.values():
        first = values[keys[0]]
        for other in keys[1:]:
            if values[other] is not first and not torch.equal(values[other], first):
                raise CheckpointError(
                    f"{keys[0]!r} and {other!r} are one tensor in the model (tied weights) "
                    "but hold different values in the checkpoint",
                    path=where,
                    expected="equal values for tied weights",
                    received="two different tensors, saved from a model where they were not tied",
                    fix="load into a model built without the tie, or tie the weights after loading",
                )


def _apply(
    model: nn.Module,
    values: dict[str, Tensor],
    objects: dict[str, Any],
    optimizer: Optimizer | None,
    optimizer_dict: dict[str, Any] | None,
    scheduler: scheduler_state.Stateful | None,
    scheduler_dict: dict[str, Any] | None,
) -> None:
    """Restore, after every check passed; on an unforeseen failure, undo what was done."""
    undo: list[tuple[Any, dict[str, Any]]] = []
    try:
        if optimizer is not None and optimizer_dict is not None:
            undo.append((optimizer, optimizer.state_dict()))
            optimizer.load_state_dict(optimizer_dict)
        if scheduler is not None and scheduler_dict is not None:
            undo.append((scheduler, scheduler.state_dict()))
            scheduler.load_state_dict(scheduler_dict)
        model.load_state_dict({**values, **objects}, strict=False)
    except BaseException:
        for target, state in reversed(undo):
            with contextlib.suppress(Exception):  # the original failure is the one to see
                target.load_state_dict(state)
        raise
