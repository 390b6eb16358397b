"""Restoring a checked checkpoint: scheduler, optimizer, then the model one tensor at a time.

`flowdl._checkpoint.load` checks everything and makes a `Plan`; `apply` carries it
out. The model's tensors are read straight into the parameters of modules that load
as `nn.Module` does, and through ``load_state_dict`` in small batches otherwise, so
memory grows by about one tensor. The observation and monitor histories come last.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from torch import Tensor, nn
from torch.optim import Optimizer

from flowdl._checkpoint import scheduler as scheduler_state
from flowdl._checkpoint.encoding import decode
from flowdl._checkpoint.errors import CheckpointError
from flowdl._checkpoint.layout import DTYPES
from flowdl._checkpoint.reader import Checkpoint
from flowdl._checkpoint.report import LoadReport
from flowdl._executor.core import GraphCore
from flowdl._observe.history import restore_history

BATCH = 32 << 20
"""Bytes of model tensors read before they are handed to ``load_state_dict`` together."""


class Plan:
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
        self.observation: dict[str, Any] | None = None
        self.monitor: Callable[[], None] | None = None


class Tensors(Mapping[str, Tensor]):
    """The checkpoint's tensors by stored name, each read from the file when asked for
    (or, with ``mapped=True``, mapped from it: see `Checkpoint.mapped`)."""

    def __init__(self, checkpoint: Checkpoint, mapped: bool = False) -> None:
        self._checkpoint = checkpoint
        self._mapped = mapped

    def __getitem__(self, name: str) -> Tensor:
        if self._mapped:
            return self._checkpoint.mapped(name)
        return self._checkpoint.tensor(name)

    def __iter__(self) -> Iterator[str]:
        return iter(self._checkpoint.entries)

    def __len__(self) -> int:
        return len(self._checkpoint.entries)


def apply(
    checkpoint: Checkpoint,
    model: nn.Module,
    plan: Plan,
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
            state = decode(plan.optimizer_state, Tensors(checkpoint, mapped=True))
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
            if size >= BATCH:
                model.load_state_dict(batch, strict=False)
                batch, size = {}, 0
        model.load_state_dict({**batch, **plan.objects}, strict=False)
        if plan.observation is not None and isinstance(model, GraphCore):
            restore_history(model, plan.observation)
        if plan.monitor is not None:
            plan.monitor()
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
        if owner is None or not isinstance(value, Tensor):
            continue
        if type(owner)._load_from_state_dict is nn.Module._load_from_state_dict:
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
