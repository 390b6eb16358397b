"""Restoring a checked checkpoint: scheduler, optimizer, then the model one tensor at a time.

`flowdl._checkpoint.load` checks everything and makes a `Plan`; `apply` carries it
out. The model's tensors are read straight into the parameters of modules that load
as `nn.Module` does (or copied in one at a time when they live on another device or
dtype), so memory grows by about one tensor; modules with loading of their own get
their tensors in one ``load_state_dict`` call. The observation and monitor histories come last.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import torch
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
    decoded), then the model's tensors one at a time (`_direct_targets`), then one
    ``load_state_dict`` call for modules with loading of their own. A failure
    after the model began to change is a `CheckpointError` that says so.
    """
    undo: list[tuple[Any, dict[str, Any]]] = []
    model_changed = False
    try:
        if scheduler is not None and plan.scheduler_state is not None:
            undo.append((scheduler, scheduler.state_dict()))
            _restore(scheduler, plan.scheduler_state, "scheduler", checkpoint.path)
        if optimizer is not None and plan.optimizer_state is not None:
            state = decode(plan.optimizer_state, Tensors(checkpoint, mapped=True))
            undo.append((optimizer, optimizer.state_dict()))
            _restore(optimizer, state, "optimizer", checkpoint.path)
            del state
        model_changed = True  # from here on a failure leaves the model part-loaded
        others: dict[str, Any] = {}
        direct = _direct_targets(model)
        for key, name in plan.values.items():
            target = direct.get(key)
            if target is None:  # a module with its own loading: one load_state_dict below
                others[key] = checkpoint.tensor(name)
                continue
            if (
                target.device.type == "cpu"
                and target.dtype == DTYPES[checkpoint.entry(name).dtype]
                and target.is_contiguous()
            ):
                checkpoint.read_into(name, target)
                # written through another view: autograd must see the change, as it
                # sees load_state_dict's copy_ (a backward of an earlier forward refuses)
                torch.autograd.graph.increment_version(target)
            else:  # what nn.Module's own loading does, one tensor at a time
                with torch.no_grad():
                    target.copy_(checkpoint.tensor(name))
        model.load_state_dict({**others, **plan.objects}, strict=False)
        if plan.observation is not None and isinstance(model, GraphCore):
            restore_history(model, plan.observation)
        if plan.monitor is not None:
            plan.monitor()
    except BaseException as error:
        for target, saved in reversed(undo):
            with contextlib.suppress(Exception):  # the original failure is the one to see
                target.load_state_dict(saved)
        if model_changed and isinstance(error, Exception):
            raise CheckpointError(
                "loading stopped part-way, after every check had passed: "
                f"{type(error).__name__}: {error}",
                path=checkpoint.path,
                expected="the whole checkpoint read into the model",
                received="the optimizer and scheduler were put back; the model's tensors "
                "are partly from the checkpoint and partly as they were",
                fix="load the checkpoint again (or rebuild the model) before training on",
            ) from error
        raise


def _direct_targets(model: nn.Module) -> dict[str, Tensor]:
    """The model's tensors that a load may fill itself, one tensor at a time.

    Those of modules that load as `nn.Module` does (``param.copy_(value)``: no
    ``_load_from_state_dict`` of their own, nor in any module above them but flowdl's
    graphs, whose own loading touches only their tensor inits), in a model that keeps
    ``nn.Module.load_state_dict`` and has no state-dict or load-state-dict hooks;
    filling them is what ``load_state_dict`` would do, without the whole state in
    memory at once. Every other tensor goes through one ``load_state_dict`` call.
    """
    if type(model).load_state_dict is not nn.Module.load_state_dict:
        return {}
    modules = dict(model.named_modules(remove_duplicate=False))
    for module in modules.values():
        if (
            module._load_state_dict_pre_hooks
            or module._load_state_dict_post_hooks
            or module._state_dict_hooks
            or module._state_dict_pre_hooks
        ):
            return {}
    plain = {
        name
        for name, module in modules.items()
        if type(module)._load_from_state_dict is nn.Module._load_from_state_dict
    }
    above_ok = plain | {n for n, m in modules.items() if isinstance(m, GraphCore)}
    out: dict[str, Tensor] = {}
    for key, value in model.state_dict(keep_vars=True).items():
        owner = key.rpartition(".")[0]
        if owner not in plain or not isinstance(value, Tensor):
            continue
        parts = owner.split(".") if owner else []
        if all(".".join(parts[:i]) in above_ok for i in range(len(parts))):
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
