"""Whether a model is sharded (its tensors are `DTensor`s), and the single-file refusal.

Kept apart from `flowdl._checkpoint.sharded` (which imports `torch.distributed.checkpoint`
when used) so that `save_checkpoint` and `load_checkpoint` check a model cheaply.
"""

from __future__ import annotations

import os
import sys

from torch import nn

from flowdl._checkpoint.errors import CheckpointError
from flowdl._checkpoint.hashing import unwrap

__all__ = ["is_sharded", "refuse_sharded"]


def is_sharded(model: nn.Module) -> bool:
    """Whether any parameter or buffer of `model` is a `DTensor` (FSDP2, tensor parallelism)."""
    module = sys.modules.get("torch.distributed.tensor")  # no DTensor exists before its import
    dtensor = getattr(module, "DTensor", None)
    return isinstance(dtensor, type) and any(
        isinstance(t, dtensor) for t in [*model.parameters(), *model.buffers()]
    )


def refuse_sharded(model: nn.Module, path: str | os.PathLike[str], action: str) -> None:
    """`fl.save_checkpoint`'s and `fl.load_checkpoint`'s check: a sharded model is refused.

    Raises:
        CheckpointError: `model` holds `DTensor` parameters, naming what to call instead.
    """
    if not is_sharded(unwrap(model)):
        return
    fix = {
        "save": "on every rank, fl.save_sharded_checkpoint(folder, model, optimizer) (each "
        "rank writes its shards); for one file for inference, then "
        "fl.consolidate_checkpoint(folder, path, unsharded_model) in one process",
        "load": "load this file into the graph before fully_shard(...) (sharding keeps the "
        "values), or save with fl.save_sharded_checkpoint and load with "
        "fl.load_sharded_checkpoint on every rank",
    }[action]
    raise CheckpointError(
        f"fl.{action}_checkpoint cannot {action} a sharded model (its parameters are DTensors, "
        "e.g. from fully_shard): each rank holds only a part of each tensor",
        path=str(path),
        expected="a model whose parameters are ordinary tensors (unwrapped, DDP, DataParallel)",
        received=f"a {type(unwrap(model)).__name__} with DTensor parameters",
        fix=fix,
    )
