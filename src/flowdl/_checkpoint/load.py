"""`fl.load_checkpoint`: check everything, then restore model, optimizer and scheduler."""

from __future__ import annotations

import os
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from flowdl._checkpoint import optimizer as optimizer_state
from flowdl._checkpoint import scheduler as scheduler_state
from flowdl._checkpoint.container import damaged
from flowdl._checkpoint.encoding import decode
from flowdl._checkpoint.errors import CheckpointError
from flowdl._checkpoint.hashing import structural_hash, unwrap
from flowdl._checkpoint.layout import DTYPES
from flowdl._checkpoint.reader import Checkpoint, open_checkpoint
from flowdl._checkpoint.report import LoadReport, Mismatch, dtype_kind, refuse_mismatch
from flowdl._checkpoint.restore import Plan, Tensors, apply
from flowdl._checkpoint.save import Resumable
from flowdl._checkpoint.sharded_check import refuse_sharded
from flowdl._executor.core import GraphCore
from flowdl._log import logger
from flowdl._observe.history import check_history


def load_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: Optimizer | None = None,
    scheduler: scheduler_state.Stateful | None = None,
    strict: bool = True,
    *,
    monitor: Resumable | None = None,
) -> LoadReport:
    """Load a checkpoint written by `save_checkpoint` into a model (and optimizer, scheduler).

    `path` may also be a plain safetensors file of weights (no flowdl metadata, as
    on the Hugging Face hub): its tensors load into a model whose ``state_dict`` has
    the same names, and the report lists what is missing or unexpected.

    A checkpoint of an `fl.Graph` also restores what the graph observed (every
    flushed metric and timing history of its tree, and its clock), so ``g.trend``
    answers as it did when the checkpoint was saved; ``monitor=`` restores a
    monitor's history. The checksum is checked over the whole file first, then the
    tensors are read one at a time: memory grows by about one tensor, not the file.

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
            nothing loads (a plain safetensors file has no structural hash: its
            tensor names, shapes and kinds of dtype must match the model's).
            ``False``: load the tensors whose name and shape match, leave the
            others as they are, and list them in the report (the
            optimizer, if given, must still fit the loaded parameters).
        monitor: a new `fl.Monitor` (before its first ``log``) to restore the
            history saved with ``fl.save_checkpoint(..., monitor=...)`` into.

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
    refuse_sharded(model, path, "load")  # FSDP2 / DTensor: fl.load_sharded_checkpoint
    target = unwrap(model)
    described = f"this {type(target).__name__}"
    report = load_into(path, target, optimizer, scheduler, strict, described, monitor)
    logger("checkpoint").debug("loaded checkpoint %s: %d tensors loaded", path, len(report.loaded))
    return report


def load_into(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: Optimizer | None,
    scheduler: scheduler_state.Stateful | None,
    strict: bool,
    described: str,
    monitor: Resumable | None = None,
) -> LoadReport:
    """`load_checkpoint` into an unwrapped `model`, which messages call `described`."""
    where = str(path)
    with open_checkpoint(path) as checkpoint:
        try:
            plan = _plan(checkpoint, where, model, optimizer, scheduler, strict, described)
            _plan_resume(plan, checkpoint, where, model, monitor)
        except (KeyError, TypeError, ValueError) as error:
            if isinstance(error, CheckpointError):
                raise
            raise CheckpointError(
                "the checkpoint's metadata is not what fl.save_checkpoint writes",
                path=where,
                received=f"{type(error).__name__}: {error} (written by flowdl "
                f"{checkpoint.document.get('flowdl_version', '?')})",
                fix="use a checkpoint written by fl.save_checkpoint",
            ) from error
        apply(checkpoint, model, plan, optimizer, scheduler)
        return plan.report


def _plan_resume(
    plan: Plan, checkpoint: Checkpoint, where: str, model: nn.Module, monitor: Resumable | None
) -> None:
    """Check the observation history and the monitor's history; plan their restore."""
    saved = checkpoint.document.get("observation")
    if saved is not None and isinstance(model, GraphCore):
        try:
            plan.observation = check_history(decode(saved, {}), model)
        except ValueError as error:
            raise damaged(where, f"its observation history is malformed: {error}") from None
    if monitor is None:
        return
    if not callable(getattr(monitor, "_restore_checkpoint_state", None)):
        raise TypeError(f"load_checkpoint(monitor=...) takes an fl.Monitor, received "
                        f"{type(monitor).__name__}")  # fmt: skip
    state = checkpoint.document.get("monitor")
    if state is None:
        raise CheckpointError(
            "the checkpoint has no monitor history",
            path=where,
            expected="a checkpoint saved with fl.save_checkpoint(..., monitor=monitor)",
            received="a checkpoint saved without monitor=...",
            fix="load without monitor=..., or save with monitor=...",
        )
    try:
        plan.monitor = monitor._restore_checkpoint_state(decode(state, {}))
    except ValueError as error:
        raise CheckpointError(
            "the checkpoint's monitor history does not fit this monitor",
            path=where,
            received=str(error),
            fix="pass a new fl.Monitor created for the same run (total_epochs), before its "
            "first log()",
        ) from None


def _plan(
    checkpoint: Checkpoint,
    where: str,
    model: nn.Module,
    optimizer: Optimizer | None,
    scheduler: scheduler_state.Stateful | None,
    strict: bool,
    described: str,
) -> Plan:
    document = checkpoint.document
    if checkpoint.plain and (optimizer is not None or scheduler is not None):
        role = "optimizer" if optimizer is not None else "scheduler"
        raise CheckpointError(
            f"this is a plain safetensors file of weights, without flowdl metadata: it holds "
            f"no {role} state",
            path=where,
            expected=f"a file written by fl.save_checkpoint(..., {role}=...)",
            received=f"a safetensors file with {len(checkpoint.entries)} tensors",
            fix=f"load the weights without {role}=... and start the {role} afresh",
        )
    saved_hash = document["structural_hash"]
    model_hash = structural_hash(model)
    values, objects, report = _match(document["model"], checkpoint, model)
    hash_matched = saved_hash == model_hash
    if strict:
        refuse_mismatch(
            report,
            hashes_match=hash_matched or checkpoint.plain,
            model_type=document["model_type"],
            expected_hash=f"{model_hash} ({described})",
            saved_hash=saved_hash,
            where=where,
        )
    _check_ties(model, values, checkpoint, where)
    optimizer_dict = None
    if optimizer is not None:
        names = optimizer_state.parameter_names(model)
        optimizer_dict = optimizer_state.prepare(
            optimizer, document["optimizer"], set(report.loaded), names, where
        )
    scheduler_dict = None
    if scheduler is not None:
        scheduler_dict = scheduler_state.prepare(
            scheduler, document["scheduler"], Tensors(checkpoint), where
        )
    extra = decode(document["extra"], {})
    report = LoadReport(
        loaded=report.loaded,
        missing=report.missing,
        unexpected=report.unexpected,
        mismatched=report.mismatched,
        hash_matched=hash_matched,
        epoch=document["epoch"],
        extra=extra,
    )
    return Plan(report, values, objects, optimizer_dict, scheduler_dict)


def _match(
    saved: dict[str, Any], checkpoint: Checkpoint, model: nn.Module
) -> tuple[dict[str, str], dict[str, Any], LoadReport]:
    """The model's entries the checkpoint can fill (key to stored name), and the report."""
    state = model.state_dict()
    saved_keys: list[str] = saved["tensors"]
    saved_set = set(saved_keys)
    saved_objects: dict[str, Any] = saved["objects"]
    values: dict[str, str] = {}
    objects: dict[str, Any] = {}
    loaded: list[str] = []
    missing: list[str] = []
    mismatched: list[Mismatch] = []
    for key, current in state.items():
        if not isinstance(current, Tensor):
            if key in saved_objects:
                objects[key] = decode(saved_objects[key], Tensors(checkpoint))
                loaded.append(key)
            else:
                missing.append(key)
            continue
        if key not in saved_set:
            missing.append(key)
            continue
        name = checkpoint.model_name(key)
        entry = checkpoint.entry(name)
        dtype = DTYPES[entry.dtype]
        if entry.shape != tuple(current.shape) or dtype_kind(dtype) != dtype_kind(current.dtype):
            shapes = entry.shape, tuple(current.shape)
            mismatched.append(Mismatch(key, *shapes, dtype, current.dtype))
            continue
        values[key] = name
        loaded.append(key)
    known = set(state)
    unexpected = [k for k in [*saved_keys, *saved_objects] if k not in known]
    report = LoadReport(tuple(loaded), tuple(missing), tuple(unexpected), tuple(mismatched))
    return values, objects, report


def _check_ties(
    model: nn.Module, values: dict[str, str], checkpoint: Checkpoint, where: str
) -> None:
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
            if values[other] != first and not torch.equal(
                checkpoint.tensor(values[other]), checkpoint.tensor(first)
            ):
                raise CheckpointError(
                    f"{keys[0]!r} and {other!r} are one tensor in the model (tied weights) "
                    "but hold different values in the checkpoint",
                    path=where,
                    expected="equal values for tied weights",
                    received="two different tensors, saved from a model where they were not tied",
                    fix="load into a model built without the tie, or tie the weights after loading",
                )
