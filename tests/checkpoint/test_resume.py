"""Resume is exact: train, save, step -> A; fresh objects, load, step -> B; A == B bit for bit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn
from torch.optim import Optimizer, lr_scheduler

import flowdl as fl
from tests.checkpoint.helpers import assert_same, rich_graph, snapshot, train_step

OPTIMIZERS: dict[str, Callable[[Any], Optimizer]] = {
    "Adam": lambda params: torch.optim.Adam(params, lr=1e-2),
    "Adam-amsgrad": lambda params: torch.optim.Adam(params, lr=1e-2, amsgrad=True),
    "AdamW": lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.1),
    "SGD-momentum": lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9),
    "SGD-nesterov": lambda params: torch.optim.SGD(
        params, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3
    ),
    "RMSprop": lambda params: torch.optim.RMSprop(params, lr=1e-3, momentum=0.5),
}


def decay(epoch: int) -> float:
    """A plain function for LambdaLR (PyTorch stores None for it; the new scheduler brings it)."""
    return 0.9**epoch


SCHEDULERS: dict[str, Callable[[Optimizer], Any]] = {
    "StepLR": lambda opt: lr_scheduler.StepLR(opt, step_size=2, gamma=0.5),
    "CosineAnnealingLR": lambda opt: lr_scheduler.CosineAnnealingLR(opt, T_max=5),
    "ReduceLROnPlateau": lambda opt: lr_scheduler.ReduceLROnPlateau(opt, patience=0, factor=0.5),
    "LambdaLR": lambda opt: lr_scheduler.LambdaLR(opt, decay),
    "OneCycleLR": lambda opt: lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=20),
    "SequentialLR": lambda opt: lr_scheduler.SequentialLR(
        opt,
        [lr_scheduler.LinearLR(opt, 0.5, total_iters=2), lr_scheduler.ExponentialLR(opt, 0.9)],
        milestones=[2],
    ),
}


def batches(n: int) -> list[tuple[Tensor, Tensor]]:
    generator = torch.Generator().manual_seed(1)
    return [(torch.randn(8, 3, generator=generator), torch.randn(8, 2, generator=generator))
            for _ in range(n)]  # fmt: skip


def make(seed: int, optimizer: str, scheduler: str | None) -> tuple[nn.Module, Optimizer, Any]:
    torch.manual_seed(seed)
    model = rich_graph()
    opt = OPTIMIZERS[optimizer](model.parameters())
    sched = SCHEDULERS[scheduler](opt) if scheduler else None
    return model, opt, sched


def step(model: nn.Module, opt: Optimizer, sched: Any, batch: tuple[Tensor, Tensor]) -> None:
    # Forward-reference state is activation from the previous call, not part of a
    # checkpoint: each step starts from fresh state, so the resumed run sees the same.
    model.reset_state()  # type: ignore[operator]
    train_step(model, opt, batch)
    if isinstance(sched, lr_scheduler.ReduceLROnPlateau):
        sched.step(1.0)  # a loss that never improves: the learning rate halves each step
    elif sched is not None:
        sched.step()


def state_of(model: nn.Module, opt: Optimizer, sched: Any) -> dict[str, Any]:
    state = snapshot(model, opt)
    state["lr"] = [group["lr"] for group in opt.param_groups]
    if sched is not None:
        state["scheduler"] = {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"}
    return state


def resume_matches(tmp_path: Path, optimizer: str, scheduler: str | None, k: int) -> None:
    data = batches(k + 1)
    model, opt, sched = make(0, optimizer, scheduler)
    model.train()
    for batch in data[:k]:
        step(model, opt, sched, batch)
    path = tmp_path / "resume.safetensors"
    fl.save_checkpoint(path, model, opt, sched, epoch=k)
    step(model, opt, sched, data[k])
    a = state_of(model, opt, sched)

    fresh, fresh_opt, fresh_sched = make(1, optimizer, scheduler)  # other initial weights
    fresh.train()
    report = fl.load_checkpoint(path, fresh, fresh_opt, fresh_sched)
    assert report.epoch == k
    step(fresh, fresh_opt, fresh_sched, data[k])
    b = state_of(fresh, fresh_opt, fresh_sched)
    assert_same(a, b)


@pytest.mark.parametrize("optimizer", list(OPTIMIZERS))
@pytest.mark.parametrize("k", [0, 3])
def test_resume_is_bit_identical_for_each_optimizer(tmp_path: Path, optimizer: str, k: int) -> None:
    resume_matches(tmp_path, optimizer, None, k)


@pytest.mark.parametrize("scheduler", list(SCHEDULERS))
def test_resume_is_bit_identical_with_each_scheduler(tmp_path: Path, scheduler: str) -> None:
    resume_matches(tmp_path, "SGD-momentum", scheduler, 3)


def test_restored_learning_rate_overrides_the_new_optimizers(tmp_path: Path) -> None:
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    for _ in range(25):
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.025)  # goDl's StepDecay(10, 0.5) check
    fl.save_checkpoint(tmp_path / "lr.safetensors", model, opt, sched)
    new_opt = torch.optim.SGD(model.parameters(), lr=0.7)
    new_sched = lr_scheduler.StepLR(new_opt, step_size=10, gamma=0.5)
    fl.load_checkpoint(tmp_path / "lr.safetensors", model, new_opt, new_sched)
    assert new_opt.param_groups[0]["lr"] == opt.param_groups[0]["lr"]
    assert new_sched.last_epoch == 25
    for _ in range(5):
        new_opt.step()
        new_sched.step()
    assert new_opt.param_groups[0]["lr"] == pytest.approx(0.0125)


def test_plateau_scheduler_remembers_its_best_and_its_patience(tmp_path: Path) -> None:
    model = nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = lr_scheduler.ReduceLROnPlateau(opt, patience=2, factor=0.5)
    for loss in (1.0, 0.5, 0.6, 0.7):  # best 0.5, two bad epochs so far
        sched.step(loss)
    fl.save_checkpoint(tmp_path / "p.safetensors", model, opt, sched)
    new_opt = torch.optim.SGD(model.parameters(), lr=0.1)
    new_sched = lr_scheduler.ReduceLROnPlateau(new_opt, patience=2, factor=0.5)
    fl.load_checkpoint(tmp_path / "p.safetensors", model, new_opt, new_sched)
    assert (new_sched.best, new_sched.num_bad_epochs) == (0.5, 2)
    new_sched.step(0.8)  # the third bad epoch: decays now
    assert new_opt.param_groups[0]["lr"] == pytest.approx(0.05)


def test_parameter_groups_with_their_own_hyperparameters_resume(tmp_path: Path) -> None:
    def build(seed: int) -> tuple[nn.Module, Optimizer]:
        torch.manual_seed(seed)
        model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        opt = torch.optim.Adam(
            [{"params": model[0].parameters(), "lr": 1e-2},
             {"params": model[2].parameters(), "lr": 1e-3, "betas": (0.8, 0.9)}]
        )  # fmt: skip
        return model, opt

    data = batches(4)
    model, opt = build(0)
    for batch in data[:3]:
        train_step(model, opt, batch)
    fl.save_checkpoint(tmp_path / "g.safetensors", model, opt)
    train_step(model, opt, data[3])
    fresh, fresh_opt = build(1)
    fl.load_checkpoint(tmp_path / "g.safetensors", fresh, fresh_opt)
    assert fresh_opt.param_groups[1]["betas"] == (0.8, 0.9)
    train_step(fresh, fresh_opt, data[3])
    assert_same(snapshot(fresh, fresh_opt), snapshot(model, opt))


def test_a_tensor_learning_rate_is_stored_as_data(tmp_path: Path) -> None:
    model = nn.Linear(2, 1)
    opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01))
    train_step(model, opt, (torch.randn(4, 2), torch.randn(4, 1)))
    fl.save_checkpoint(tmp_path / "t.safetensors", model, opt)
    new_opt = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.5))
    fl.load_checkpoint(tmp_path / "t.safetensors", model, new_opt)
    lr = new_opt.param_groups[0]["lr"]
    assert isinstance(lr, Tensor)
    assert lr.item() == pytest.approx(0.01)


def test_a_float64_model_resumes_in_float64(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Linear(3, 2).double()
    opt = torch.optim.Adam(model.parameters())
    batch = (torch.randn(4, 3, dtype=torch.float64), torch.randn(4, 2, dtype=torch.float64))
    train_step(model, opt, batch)
    fl.save_checkpoint(tmp_path / "d.safetensors", model, opt)
    fresh = nn.Linear(3, 2).double()
    fresh_opt = torch.optim.Adam(fresh.parameters())
    fl.load_checkpoint(tmp_path / "d.safetensors", fresh, fresh_opt)
    assert fresh_opt.state_dict()["state"][0]["exp_avg"].dtype == torch.float64
    train_step(model, opt, batch)
    train_step(fresh, fresh_opt, batch)
    assert_same(snapshot(fresh, fresh_opt), snapshot(model, opt))
