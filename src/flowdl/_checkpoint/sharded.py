"""Sharded checkpoints: every rank writes its shards, any number of ranks reads them.

`save_sharded_checkpoint` and `load_sharded_checkpoint` go through
`torch.distributed.checkpoint` (DCP) and its `torch.distributed.checkpoint.state_dict`
functions, so a graph sharded with FSDP2 (`fully_shard`), wrapped in DDP, or plain
saves on one world size and loads on another. The tensors are stored by DCP's
`HuggingFaceStorageWriter` as safetensors files (one per rank holding data), whose
layout DCP keeps as JSON in their headers; DCP's default `FileSystemWriter` would
write a pickled ``.metadata`` file instead, which loading must unpickle. Everything
else goes into ``flowdl.json`` (`flowdl._checkpoint.sharded_document`). Loading
therefore never unpickles anything from the folder.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.optim import Optimizer

from flowdl._checkpoint import sharded_document as document_
from flowdl._checkpoint.errors import CheckpointError
from flowdl._checkpoint.hashing import structural_hash, unwrap
from flowdl._checkpoint.report import LoadReport
from flowdl._checkpoint.save import save_checkpoint
from flowdl._checkpoint.sharded_check import is_sharded
from flowdl._checkpoint.sharded_load import load_state, single_process_quietly
from flowdl._files import write_atomically

__all__ = ["consolidate_checkpoint", "load_sharded_checkpoint", "save_sharded_checkpoint"]


def _distributed() -> bool:
    return dist.is_available() and dist.is_initialized()


def save_sharded_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: Optimizer | None = None,
    **extra: Any,
) -> None:
    """Save a model (sharded or not) and its optimizer into a folder, from every rank.

    A collective: under `torch.distributed`, every rank calls it with the same
    arguments, and each writes the shards it holds (a graph sharded by
    `fully_shard` is never gathered on one rank). The folder holds one safetensors
    file per rank that holds data, written by `torch.distributed.checkpoint`, and
    ``flowdl.json`` (the structural hash, the optimizer's hyperparameters, the epoch
    and the extras). `load_sharded_checkpoint` reads it on any number of ranks;
    `consolidate_checkpoint` turns it into one `save_checkpoint` file. Without a
    process group it saves the whole model from this one process.

    The shards go into a temporary folder next to `path` (``.<name>.flowdl-saving``)
    that replaces `path` once every rank has written: a crash leaves the previous
    checkpoint (or, between the two renames of the swap, ``.<name>.flowdl-replaced``,
    which the next save removes).

    Args:
        path: the checkpoint folder; its parent must exist. An existing sharded
            checkpoint there is replaced; anything else there is refused.
        model: the model as trained: `fully_shard`-ed, in `DistributedDataParallel`,
            or plain.
        optimizer: its optimizer, whose state (sharded like the parameters) is saved.
        **extra: numbers, strings, booleans, ``None`` and lists and dicts of those,
            returned as ``report.extra``; ``epoch=`` (an integer) is the epoch.

    Raises:
        CheckpointError: the parent folder is missing, `path` is something other than
            a sharded checkpoint, or an extra, a hyperparameter or a part of the state
            cannot be stored. Nothing is written then.

    Example:
        >>> import tempfile, torch, flowdl as fl
        >>> from torch import nn
        >>> model = fl.Flow(nn.Linear(2, 3)).through(nn.ReLU()).build()
        >>> folder = tempfile.mkdtemp() + "/run"
        >>> fl.save_sharded_checkpoint(folder, model, epoch=2)  # no process group: one rank
        >>> fl.load_sharded_checkpoint(folder, model).epoch
        2
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"save_sharded_checkpoint() takes an nn.Module, received {type(model)}")
    from torch.distributed.checkpoint import state_dict as states  # 1 s to import: on use

    folder = Path(path)
    where = str(folder)
    epoch = _check_target(folder, extra.get("epoch"))
    stored_extra = document_.plain_json(extra, "the extras", where)
    target = unwrap(model)
    tensors: dict[str, Tensor] = {}
    for key, value in states.get_model_state_dict(model).items():
        if not isinstance(value, Tensor):
            raise document_._unstorable(f"the model's state {key!r}", where, type(value).__name__)
        tensors[key] = value
    saved_optimizer = None
    if optimizer is not None:
        state = states.get_optimizer_state_dict(model, optimizer)
        saved_optimizer = _optimizer(state, tensors, where)
        saved_optimizer["type"] = type(optimizer).__qualname__
    world = dist.get_world_size() if _distributed() else 1
    document = document_.new_document(
        type(target).__qualname__,
        structural_hash(target),
        world,
        [key for key in tensors if not key.startswith(document_.OPTIMIZER_PREFIX)],
        {key: list(value.shape) for key, value in tensors.items()},
        saved_optimizer,
        epoch,
        stored_extra,
    )
    _write(folder, tensors, document)


def _check_target(folder: Path, epoch: Any) -> int | None:
    where = str(folder)
    if epoch is not None and (isinstance(epoch, bool) or not isinstance(epoch, int)):
        raise CheckpointError(
            "epoch must be an integer",
            path=where,
            expected="epoch=<int>",
            received=f"epoch={epoch!r} ({type(epoch).__name__})",
            fix="pass the epoch number as an int; other values can go in another extra",
        )
    if not folder.parent.is_dir():
        raise CheckpointError(
            "the checkpoint's parent folder does not exist",
            path=where,
            expected="an existing folder",
            received=f"{folder.parent}: no such folder",
            fix=f"create it first: Path({str(folder.parent)!r}).mkdir(parents=True, exist_ok=True)",
        )
    if folder.exists() and not (folder / document_.DOCUMENT).is_file():
        raise CheckpointError(
            "the path exists and is not a sharded checkpoint: it is not replaced",
            path=where,
            expected=f"a new path, or a folder written by fl.save_sharded_checkpoint "
            f"(holding {document_.DOCUMENT})",
            received="a file" if folder.is_file() else "a folder of something else",
            fix="choose another path, or remove what is there",
        )
    return epoch


def _optimizer(state: dict[str, Any], tensors: dict[str, Tensor], where: str) -> dict[str, Any]:
    """The optimizer's state: tensors into `tensors`, the rest as JSON."""
    stored_tensors: dict[str, list[str]] = {}
    values: dict[str, dict[str, Any]] = {}
    for parameter, entries in state["state"].items():
        for name, value in entries.items():
            if isinstance(value, Tensor):
                tensors[document_.optimizer_key(parameter, name)] = value
                stored_tensors.setdefault(parameter, []).append(name)
            else:
                what = f"the optimizer's state {name!r} of {parameter!r}"
                values.setdefault(parameter, {})[name] = document_.plain_json(value, what, where)
    groups = [
        document_.plain_json(group, f"the optimizer's param_groups[{i}]", where)
        for i, group in enumerate(state["param_groups"])
    ]
    return {"param_groups": groups, "tensors": stored_tensors, "values": values}


def _write(folder: Path, tensors: dict[str, Tensor], document: dict[str, Any]) -> None:
    """Every rank writes its shards into a temporary folder; rank 0 swaps it into place."""
    from torch.distributed.checkpoint.hf_storage import HuggingFaceStorageWriter
    from torch.distributed.checkpoint.state_dict_saver import save

    distributed = _distributed()
    rank = dist.get_rank() if distributed else 0
    saving = folder.parent / f".{folder.name}.flowdl-saving"
    replaced = folder.parent / f".{folder.name}.flowdl-replaced"
    failure = None
    if rank == 0:
        try:
            shutil.rmtree(saving, ignore_errors=True)  # what an interrupted save left
            saving.mkdir()
        except OSError as error:
            failure = f"{type(error).__name__}: {error}"
    _raise_if_failed(failure, distributed, folder, "could not create the temporary folder")
    with single_process_quietly():
        save(
            tensors,
            storage_writer=HuggingFaceStorageWriter(str(saving), save_distributed=True),
            no_dist=not distributed,
        )
    if rank == 0:
        try:
            text = json.dumps(document, allow_nan=False)
            write_atomically(saving / document_.DOCUMENT, text.encode())
            shutil.rmtree(replaced, ignore_errors=True)
            if folder.exists():
                os.replace(folder, replaced)
            os.replace(saving, folder)
            shutil.rmtree(replaced, ignore_errors=True)
        except (OSError, ValueError) as error:
            failure = f"{type(error).__name__}: {error}"
    _raise_if_failed(failure, distributed, folder, "could not put the checkpoint in place")


def _raise_if_failed(failure: str | None, distributed: bool, folder: Path, what: str) -> None:
    """Every rank raises what rank 0 met (which only rank 0 knows), or goes on."""
    shared: list[str | None] = [failure]
    if distributed:
        dist.broadcast_object_list(shared, src=0)  # between the ranks, never from a file
    if shared[0] is not None:
        raise CheckpointError(
            f"rank 0 {what}",
            path=str(folder),
            received=shared[0],
            fix="check the folder's permissions and free space, and save again",
        )


def load_sharded_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    optimizer: Optimizer | None = None,
    strict: bool = True,
) -> LoadReport:
    """Load a `save_sharded_checkpoint` folder into a model (and optimizer), on every rank.

    A collective under `torch.distributed`: every rank calls it, and each reads the
    parts of the tensors it holds, whatever the number of ranks that saved them
    (DCP reshards: saved on 2 ranks, loaded on 1, 2 or 8, into `fully_shard`, DDP or a
    plain model). Without a process group, one process reads everything. As
    `load_checkpoint` does, it checks the document, the structural hash, the
    tensors' names, shapes and kinds of dtype and the optimizer before it changes
    anything, and the tensors are read into new tensors before they are copied into
    the model's. Nothing in the folder is unpickled.

    Args:
        path: a folder written by `save_sharded_checkpoint`.
        model: the model to load into, sharded or not, built like the saved one.
        optimizer: an optimizer of the saved type over the same parameters.
        strict: ``True``: the structural hash and every tensor must match, or
            nothing loads. ``False``: load what matches, report the rest.

    Returns:
        a `LoadReport`, as `load_checkpoint`'s.

    Raises:
        CheckpointError: the folder is not a sharded checkpoint or is damaged
            (a shard file missing among them), the model or optimizer does not match.

    Example:
        >>> import tempfile, torch, flowdl as fl
        >>> from torch import nn
        >>> make = lambda: fl.Flow(nn.Linear(2, 3)).through(nn.ReLU()).build()
        >>> model, folder = make(), tempfile.mkdtemp() + "/run"
        >>> fl.save_sharded_checkpoint(folder, model)
        >>> fresh = make()
        >>> fl.load_sharded_checkpoint(folder, fresh).loaded
        ('Linear_0.weight', 'Linear_0.bias')
        >>> torch.equal(fresh.Linear_0.weight, model.Linear_0.weight)
        True
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"load_sharded_checkpoint() takes an nn.Module, received {type(model)}")
    from torch.distributed.checkpoint import state_dict as states

    folder = Path(path)
    document = document_.read_document(folder)
    fresh_optimizer = optimizer is not None and not optimizer.state
    try:
        model_state = states.get_model_state_dict(model)
        optimizer_state = (
            states.get_optimizer_state_dict(model, optimizer) if optimizer is not None else None
        )
        values, optimizer_values, report = load_state(
            folder, document, unwrap(model), model_state, optimizer, optimizer_state,
            strict, no_dist=not _distributed(),
        )  # fmt: skip
    except BaseException:
        if fresh_optimizer and optimizer is not None:  # DCP gave it zero state to fill
            optimizer.state = defaultdict(dict)
        raise
    options = states.StateDictOptions(strict=strict)
    states.set_model_state_dict(model, dict(values), options=options)
    if optimizer is not None and optimizer_values is not None:
        states.set_optimizer_state_dict(model, optimizer, optimizer_values, options=options)
    return report


def consolidate_checkpoint(
    path: str | os.PathLike[str],
    destination: str | os.PathLike[str],
    model: nn.Module,
    optimizer: Optimizer | None = None,
) -> LoadReport:
    """Turn a sharded checkpoint into one ordinary `save_checkpoint` file, in one process.

    Reads every shard of the folder into `model` (a plain, unsharded model built
    like the trained one) and `optimizer`, then writes them with `save_checkpoint`,
    with the saved epoch and extras. It runs in this process only (no collective),
    so rank 0 can call it after `save_sharded_checkpoint` returned, or any process
    later, with no process group at all: the file then serves inference like any
    other (`load_checkpoint`). The whole model is held by this process.

    Args:
        path: a folder written by `save_sharded_checkpoint`.
        destination: the file to write (``*.safetensors``).
        model: an unsharded model built like the saved one (not `fully_shard`-ed).
        optimizer: an optimizer over `model`, to keep the optimizer state too.

    Returns:
        the `LoadReport` of reading the folder into `model`.

    Raises:
        CheckpointError: `model` is sharded, or as `load_sharded_checkpoint`.

    Example:
        >>> import tempfile, torch, flowdl as fl
        >>> from torch import nn
        >>> make = lambda: fl.Flow(nn.Linear(2, 3)).through(nn.ReLU()).build()
        >>> folder = tempfile.mkdtemp()
        >>> fl.save_sharded_checkpoint(folder + "/run", make(), epoch=4)
        >>> _ = fl.consolidate_checkpoint(folder + "/run", folder + "/model.safetensors", make())
        >>> fl.checkpoint_info(folder + "/model.safetensors").epoch
        4
    """
    if is_sharded(unwrap(model)):
        raise CheckpointError(
            "consolidate_checkpoint needs an unsharded model to hold the whole checkpoint",
            path=str(path),
            expected="a model built like the trained one, before fully_shard",
            received=f"a {type(unwrap(model)).__name__} with DTensor parameters",
            fix="build a fresh model (without fully_shard) and pass it",
        )
    from torch.distributed.checkpoint import state_dict as states

    folder = Path(path)
    document = document_.read_document(folder)
    target = unwrap(model)
    model_state = target.state_dict()
    optimizer_state = (
        states.get_optimizer_state_dict(target, optimizer) if optimizer is not None else None
    )
    values, optimizer_values, report = load_state(
        folder, document, target, model_state, optimizer, optimizer_state, True, no_dist=True
    )
    with torch.no_grad():
        target.load_state_dict(values)
    if optimizer is not None and optimizer_values is not None:
        states.set_optimizer_state_dict(target, optimizer, optimizer_values)
    extra = {key: value for key, value in report.extra.items() if key != "epoch"}
    save_checkpoint(destination, target, optimizer, epoch=report.epoch, **extra)
    return report
