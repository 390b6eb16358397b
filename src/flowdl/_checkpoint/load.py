"""`fl.load_checkpoint`: check everything, then restore model, optimizer and scheduler."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from flowdl._checkpoint import optimizer as optimizer_state
from flowdl._checkpoint import scheduler as scheduler_state
from flowdl._checkpoint.encoding import decode
from flowdl._checkpoint.errors import CheckpointError
from flowdl._checkpoint.hashing import structural_hash, unwrap
from flowdl._checkpoint.layout import DTYPES
from flowdl._checkpoint.reader import Checkpoint, open_checkpoint
from flowdl._checkpoint.report import LoadReport, Mismatch

_LISTED = 6
_BATCH = 32 << 20
"""Bytes of model tensors read before they are handed to ``load_state_dict`` together."""


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
    return load_into(path, target, optimizer, scheduler, strict, f"this {type(target).__name__}")


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
    with open_checkpoint(path) as checkpoint:
        try:
            plan = _plan(checkpoint, where, model, optimizer, scheduler, strict, described)
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
        _apply(checkpoint, model, plan, optimizer, scheduler)
        return plan.report


class _Plan:
    """What a load will do, decided before anything changes."""

    def __init__(
        self,
        report: LoadReport,
        values: dict[str, str],
        objects: dict[str, Any],
        optimizer_state: Any,
        scheduler_state: dict[str, Any] | None,
    ) -> None:
        self.report = report
        self.values = values
        self.objects = objects
        self.optimizer_state = optimizer_state
        self.scheduler_state = scheduler_state


class _Tensors(Mapping[str, Tensor]):
    """The checkpoint's tensors by stored name, each read from the file when asked for."""

    def __init__(self, checkpoint: Checkpoint) -> None:
        self._checkpoint = checkpoint

    def __getitem__(self, name: str) -> Tensor:
        return self._checkpoint.tensor(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._checkpoint.entries)

    def __len__(self) -> int:
        return len(self._checkpoint.entries)


def _plan(
    checkpoint: Checkpoint,
    where: str,
    model: nn.Module,
    optimizer: Optimizer | None,
    scheduler: scheduler_state.Stateful | None,
    strict: bool,
    described: str,
) -> _Plan:
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
    if strict and not hash_matched and not checkpoint.plain:
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
            scheduler, document["scheduler"], _Tensors(checkpoint), where
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
    return _Plan(report, values, objects, optimizer_dict, scheduler_dict)


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
                objects[key] = decode(saved_objects[key], _Tensors(checkpoint))
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
        if entry.shape != tuple(current.shape) or _kind(dtype) != _kind(current.dtype):
            shapes = entry.shape, tuple(current.shape)
            mismatched.append(Mismatch(key, *shapes, dtype, current.dtype))
            continue
        values[key] = name
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


def _apply(
    checkpoint: Checkpoint,
    model: nn.Module,
    plan: _Plan,
    optimizer: Optimizer | None,
    scheduler: scheduler_state.Stateful | None,
) -> None:
    """Restore, after every check passed; on an unforeseen failure, undo what can be undone.

    The scheduler first, then the optimizer (its state tensors read as they are
    decoded), then the model's tensors, read a few at a time and handed to
    ``load_state_dict``, so memory holds at most a batch of them at once.
    """
    undo: list[tuple[Any, dict[str, Any]]] = []
    try:
        if scheduler is not None and plan.scheduler_state is not None:
            undo.append((scheduler, scheduler.state_dict()))
            _restore(scheduler, plan.scheduler_state, "scheduler", checkpoint.path)
        if optimizer is not None and plan.optimizer_state is not None:
            state = decode(plan.optimizer_state, _Tensors(checkpoint))
            undo.append((optimizer, optimizer.state_dict()))
            _restore(optimizer, state, "optimizer", checkpoint.path)
            del state
        batch: dict[str, Any] = {}
        size = 0
        direct = _direct_targets(model)
        for key, name in plan.values.items():
            target = direct.get(key)
            entry = checkpoint.entry(name)
            if (
                target is not None
                and target.device.type == "cpu"
                and target.dtype == DTYPES[entry.dtype]
                and target.is_contiguous()
            ):
                checkpoint.read_into(name, target)
                continue
            tensor = checkpoint.tensor(name)
            batch[key] = tensor
            size += tensor.numel() * tensor.element_size()
            if size >= _BATCH:
                model.load_state_dict(batch, strict=False)
                batch, size = {}, 0
        model.load_state_dict({**batch, **plan.objects}, strict=False)
    except BaseException:
        for target, saved in reversed(undo):
            with contextlib.suppress(Exception):  # the original failure is the one to see
                target.load_state_dict(saved)
        raise


def _direct_targets(model: nn.Module) -> dict[str, Tensor]:
    """The model's tensors that a load may fill by reading straight into them.

    Those of modules that load as `nn.Module` does (``param.copy_(value)``: no
    ``_load_from_state_dict`` of their own), in a model without state-dict or
    load-state-dict hooks; reading into them is what ``load_state_dict`` would do,
    without a second copy of the tensor in memory. Every other tensor goes through
    ``load_state_dict``.
    """
    modules = dict(model.named_modules(remove_duplicate=False))
    for module in modules.values():
        if (
            module._load_state_dict_pre_hooks
            or module._load_state_dict_post_hooks
            or module._state_dict_hooks
            or module._state_dict_pre_hooks
        ):
            return {}
    out: dict[str, Tensor] = {}
    for key, value in model.state_dict(keep_vars=True).items():
        owner = modules.get(key.rpartition(".")[0])
        plain = type(owner)._load_from_state_dict is nn.Module._load_from_state_dict
        if owner is not None and plain and isinstance(value, Tensor):
            out[key] = value
    return out


def _restore(target: Any, state: dict[str, Any], role: str, where: str) -> None:
    """``target.load_state_dict(state)``; a refusal of the saved state is a CheckpointError."""
    try:
        target.load_state_dict(state)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as error:
        raise CheckpointError(
            f"the checkpoint's {role} state does not load into this {type(target).__name__}",
            path=where,
            received=f"{type(error).__name__}: {error}",
            fix=f"use a checkpoint written by fl.save_checkpoint with this {role}, or load "
            f"without {role}=...",
        ) from error
