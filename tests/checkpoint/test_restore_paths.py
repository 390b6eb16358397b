"""How a checked checkpoint reaches the model: straight into plain modules' tensors, one
at a time, and through ``load_state_dict`` wherever a module or the model loads its own
way; autograd sees the change; a failure part-way says so."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import flowdl as fl
from flowdl._checkpoint import reader


def saved(tmp_path: Path, model: nn.Module, *rest: Any) -> Path:
    path = tmp_path / "c.safetensors"
    fl.save_checkpoint(path, model, *rest)
    return path


def test_a_backward_of_a_forward_before_the_load_is_refused_as_torch_refuses_it(
    tmp_path: Path,
) -> None:
    torch.manual_seed(0)
    path = saved(tmp_path, nn.Sequential(nn.Linear(4, 4)))
    model = nn.Sequential(nn.Linear(4, 4))
    loss = model(torch.randn(2, 4, requires_grad=True)).square().sum()
    fl.load_checkpoint(path, model)  # as model.load_state_dict(...) would, torch refuses
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


class Doubling(nn.Sequential):
    """A model whose load_state_dict changes what it is given."""

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        doubled = {k: v * 2 for k, v in state_dict.items()}
        return super().load_state_dict(doubled, strict=strict, assign=assign)


class Renaming(nn.Module):
    """A parent that renames its child's keys when loading (a legacy conversion)."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(3, 3)

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *rest: Any) -> None:
        for name in ("weight", "bias"):
            value = state_dict.pop(prefix + "inner." + name, None)
            if value is not None:
                state_dict[prefix + "inner." + name] = value.flip(-1)
        super()._load_from_state_dict(state_dict, prefix, *rest)


class Reading(nn.Linear):
    """A module that reads its own key at load time, without checking it is there."""

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *rest: Any) -> None:
        self.norm = float(state_dict[prefix + "weight"].norm())
        super()._load_from_state_dict(state_dict, prefix, *rest)


@pytest.mark.parametrize(
    "build",
    [
        lambda: Doubling(nn.Linear(4, 4), nn.Linear(4, 2)),
        lambda: nn.Sequential(Renaming(), nn.Linear(3, 3)),
        lambda: nn.Sequential(*(Reading(16, 16) for _ in range(3))),
        lambda: nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4)).double(),  # other dtype
    ],
    ids=["model-load_state_dict", "parent-renames", "reads-own-key", "float64-model"],
)
def test_the_load_does_what_load_state_dict_does(tmp_path: Path, build: Any) -> None:
    torch.manual_seed(0)
    source = build().float()
    path = saved(tmp_path, source)
    expected, loaded = build(), build()
    expected.load_state_dict(source.state_dict())
    fl.load_checkpoint(path, loaded)
    for (key, want), (_, got) in zip(
        expected.state_dict().items(), loaded.state_dict().items(), strict=True
    ):
        assert torch.equal(want, got), key
    assert [getattr(m, "norm", None) for m in loaded.modules()] == [
        getattr(m, "norm", None) for m in expected.modules()
    ]


def test_a_failure_after_the_model_began_to_change_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    path = saved(tmp_path, model, torch.optim.SGD(model.parameters(), lr=0.5))
    target = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
    optimizer = torch.optim.SGD(target.parameters(), lr=0.1)
    original, calls = reader.Checkpoint.read_into, []

    def failing(self: reader.Checkpoint, name: str, tensor: torch.Tensor) -> None:
        calls.append(name)
        if len(calls) == 3:
            raise OSError(5, "Input/output error")
        original(self, name, tensor)

    monkeypatch.setattr(reader.Checkpoint, "read_into", failing)
    with pytest.raises(fl.CheckpointError, match="part-way") as raised:
        fl.load_checkpoint(path, target, optimizer)
    assert "load the checkpoint again" in str(raised.value)
    assert optimizer.param_groups[0]["lr"] == 0.1  # put back
