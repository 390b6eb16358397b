"""`fl.save_checkpoint`: a model, its optimizer and scheduler, and extras, in one file."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn
from torch.optim import Optimizer

from flowdl._checkpoint import optimizer as optimizer_state
from flowdl._checkpoint import scheduler as scheduler_state
from flowdl._checkpoint.encoding import encode
from flowdl._checkpoint.errors import CheckpointError
from flowdl._checkpoint.hashing import structural_hash, unwrap
from flowdl._checkpoint.layout import FORMAT_VERSION, NAMESPACE, other_prefix
from flowdl._checkpoint.sharded_check import refuse_sharded
from flowdl._checkpoint.writer import write_checkpoint
from flowdl._executor.core import GraphCore
from flowdl._log import logger
from flowdl._observe.history import export_history
from flowdl._version import __version__


class Resumable(Protocol):
    """What ``monitor=`` takes: an `fl.Monitor` (its history goes into the checkpoint)."""

    def _checkpoint_state(self) -> dict[str, Any]: ...

    def _restore_checkpoint_state(self, state: object) -> Callable[[], None]: ...


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: Optimizer | None = None,
    scheduler: scheduler_state.Stateful | None = None,
    *,
    monitor: Resumable | None = None,
    **extra: Any,
) -> None:
    """Save a model (and optionally its optimizer and scheduler) to one file, atomically.

    The file is a safetensors file: every tensor (the model's state dict, the
    optimizer's state such as Adam's moments, tensors in the scheduler's state) is
    raw data, and the rest is JSON in its metadata: the format version, the flowdl
    and torch versions, the model's structural hash (`fl.structural_hash`), the
    epoch, the optimizer's and scheduler's hyperparameters and counters, and the
    extras. Tied weights (one tensor under several names) are stored once and load
    back tied. The model's tensors are stored under their ``state_dict`` names, so
    ``safetensors.torch.load_file(path)`` gives them to plain PyTorch as they are (the
    optimizer's and scheduler's tensors are under ``__flowdl__/``). The write streams
    one tensor at a time: memory grows by at most one tensor (a copy only for a tensor
    that is not a contiguous CPU tensor).

    For a resumed run that goes on exactly as the stopped one, the file also holds
    what flowdl observed: for an `fl.Graph`, the flushed history of every metric and
    timing of every graph in its tree and its clock (epochs ended, their durations,
    the time elapsed), so that ``g.trend(...)`` answers after a load as it did
    before the save; and, with ``monitor=``, the monitor's logged epochs.

    The write goes to a temporary file in the same directory
    (``.<name>.flowdl-partial-<pid>-<random>``), fsynced and renamed over `path`: a
    crash never leaves a broken file where a good one was, and the next save of the
    same checkpoint removes the partial files that crashed saves left behind.

    A model wrapped in `DistributedDataParallel` (or `DataParallel`, or
    `torch.compile`) is saved as the module it wraps, without the ``module.``
    prefix, so the file loads into a wrapped or an unwrapped model alike. Under
    `torch.distributed`, save from one rank (``if dist.get_rank() == 0``).

    Args:
        path: the file to write (conventionally ``*.safetensors``); its directory
            must exist. An existing file is replaced.
        model: any `nn.Module`, an `fl.Graph` or not.
        optimizer: a `torch.optim.Optimizer` whose state to save.
        scheduler: a learning-rate scheduler (anything with ``state_dict()``).
        monitor: an `fl.Monitor` whose history to keep; ``fl.load_checkpoint(...,
            monitor=...)`` restores it into a new monitor. (Any other value is kept as
            an extra named ``monitor``, as before this keyword existed.)
        **extra: data to keep with the checkpoint, returned by `load_checkpoint` as
            ``report.extra``: numbers, strings, ``None``, and lists, tuples and dicts
            of those. ``epoch=`` (an integer) is also recorded as the epoch.

    Raises:
        CheckpointError: an extra, or a part of the optimizer's or scheduler's state,
            cannot be stored (the message names it), ``epoch`` is not an integer, or
            the directory does not exist. Nothing is written then.
        OSError: the file could not be written; an existing file is left as it was.

    Example:
        >>> import tempfile, torch, flowdl as fl
        >>> from torch import nn
        >>> model = fl.Flow(nn.Linear(2, 3)).through(nn.ReLU()).build()
        >>> opt = torch.optim.Adam(model.parameters())
        >>> path = tempfile.mkdtemp() + "/model.safetensors"
        >>> fl.save_checkpoint(path, model, opt, epoch=3, note="first try")
        >>> fl.checkpoint_info(path).epoch
        3
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"save_checkpoint() takes an nn.Module, received {type(model).__name__}")
    refuse_sharded(model, path, "save")  # FSDP2 / DTensor: fl.save_sharded_checkpoint
    directory = Path(path).parent
    if not directory.is_dir():
        raise CheckpointError(
            "the checkpoint's directory does not exist",
            path=str(path),
            expected="an existing directory",
            received=f"{directory}: no such directory",
            fix=f"create it first: Path({str(directory)!r}).mkdir(parents=True, exist_ok=True)",
        )
    epoch = extra.get("epoch")
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int)):
        raise CheckpointError(
            "epoch must be an integer",
            path=str(path),
            expected="epoch=<int>",
            received=f"epoch={epoch!r} ({type(epoch).__name__})",
            fix="pass the epoch number as an int; other values can go in another extra",
        )
    if monitor is not None and not callable(getattr(monitor, "_checkpoint_state", None)):
        extra = {"monitor": monitor, **extra}  # an extra named "monitor", as it used to be
        monitor = None
    try:
        tensors, document = _capture(model, optimizer, scheduler, epoch, extra)
        target = unwrap(model)
        if isinstance(target, GraphCore):
            history = export_history(target)
            document["observation"] = encode(history, "the observation history", None)
        if monitor is not None:
            state = monitor._checkpoint_state()
            document["monitor"] = encode(state, "the monitor's history", None)
    except CheckpointError as error:  # name the file in what the encoder found
        raise CheckpointError(
            error.problem, path=str(path), expected=error.expected,
            received=error.received, fix=error.fix,
        ) from None  # fmt: skip
    write_checkpoint(path, tensors, document)
    logger("checkpoint").debug("saved checkpoint %s (%d tensors)", path, len(tensors))


def _capture(
    model: nn.Module,
    optimizer: Optimizer | None,
    scheduler: scheduler_state.Stateful | None,
    epoch: int | None,
    extra: dict[str, Any],
) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors to store (by stored name, not copied) and the document."""
    target = unwrap(model)
    tensors: dict[str, Tensor] = {}
    document: dict[str, Any] = {
        "flowdl_version": __version__,
        "torch_version": torch.__version__,
        "structural_hash": structural_hash(target),
        "model_type": type(target).__qualname__,
        "epoch": epoch,
        "extra": encode(extra, "extra", None),
        "model": _capture_model(target, tensors),
        "optimizer": None,
        "scheduler": None,
    }
    if optimizer is not None:
        names = optimizer_state.parameter_names(target)
        document["optimizer"] = optimizer_state.capture(optimizer, names, tensors)
    if scheduler is not None:
        document["scheduler"] = scheduler_state.capture(scheduler, tensors)
    return tensors, document


def _capture_model(model: nn.Module, tensors: dict[str, Tensor]) -> dict[str, Any]:
    """The model's state dict: tensors into `tensors`, other entries (extra state) as JSON."""
    keys: list[str] = []
    objects: dict[str, Any] = {}
    for key, value in model.state_dict().items():
        if key.startswith(NAMESPACE):
            raise CheckpointError(
                f"the model's state-dict key {key!r} starts with {NAMESPACE!r}, the names "
                "flowdl keeps for the optimizer's and scheduler's state",
                received=key,
                fix="rename the submodule whose name starts with '__flowdl__'",
            )
        if isinstance(value, Tensor):
            tensors[key] = value
            keys.append(key)
        else:  # a module's get_extra_state()
            where = f"the model's state {key!r}"
            prefix = other_prefix("model-extra", FORMAT_VERSION)
            objects[key] = encode(value, where, tensors, f"{prefix}/{key}")
    return {"tensors": keys, "objects": objects}
