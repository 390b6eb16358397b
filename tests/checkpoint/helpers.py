"""Models, training steps and snapshots shared by the checkpoint tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

import flowdl as fl
from tests.support import Mix


def encoder(label: str = "encoder") -> fl.Graph:
    """A labelled graph with forward-reference state, to nest in others."""
    return (
        fl.Flow(nn.Linear(4, 4))
        .through(nn.Tanh())
        .through(Mix(4))
        .using("memory")
        .tag("memory")
        .label(label)
        .build()
    )


def rich_graph() -> fl.Graph:
    """Nested graphs, state, a loop, a gate, a switch, BatchNorm buffers, a residual."""
    return (
        fl.Flow(nn.Linear(3, 4))
        .through(nn.BatchNorm1d(4))
        .through(encoder())
        .also(nn.Linear(4, 4))
        .loop(fl.Flow(nn.Linear(4, 4)).through(nn.Tanh()).build())
        .for_(2)
        .gate(fl.SoftmaxRouter(4, 2), nn.Linear(4, 4), encoder("expert"))  # labels: unique
        .switch(fl.ArgmaxSelector(4, 2), nn.Linear(4, 4), nn.Identity())
        .through(nn.Linear(4, 2))
        .build()
    )


class TiedLM(nn.Module):
    """An embedding whose weight is also the output projection's (tied weights)."""

    def __init__(self, vocabulary: int = 7, width: int = 5) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocabulary, width)
        self.hidden = nn.Linear(width, width)
        self.out = nn.Linear(width, vocabulary, bias=False)
        self.out.weight = self.embed.weight

    def forward(self, tokens: Tensor) -> Tensor:
        return self.out(torch.tanh(self.hidden(self.embed(tokens))))


def reused_module_graph() -> fl.Graph:
    """One Linear used at two nodes of a graph."""
    shared = nn.Linear(3, 3)
    return fl.Flow(shared).through(nn.ReLU()).through(shared).through(nn.Linear(3, 1)).build()


def snapshot(model: nn.Module, optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
    """Deep copies of a model's state dict and an optimizer's state, to compare bit for bit."""
    state: dict[str, Any] = {
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()}
    }
    if optimizer is not None:
        saved = optimizer.state_dict()
        state["groups"] = [
            {k: v for k, v in group.items() if k != "params"} for group in saved["param_groups"]
        ]
        state["state"] = {
            index: {k: v.clone() if isinstance(v, Tensor) else v for k, v in entry.items()}
            for index, entry in saved["state"].items()
        }
    return state


def assert_same(a: dict[str, Any], b: dict[str, Any]) -> None:
    """Two snapshots are bit-identical (tensors equal in value, dtype and shape)."""
    assert a.keys() == b.keys()
    for part in a:
        assert_equal_nested(a[part], b[part], part)


def assert_equal_nested(a: Any, b: Any, where: str) -> None:
    if isinstance(a, Tensor):
        assert isinstance(b, Tensor), where
        assert a.dtype == b.dtype, where
        assert a.shape == b.shape, where
        assert torch.equal(a, b), where
    elif isinstance(a, dict):
        assert isinstance(b, dict), where
        assert a.keys() == b.keys(), where
        for k in a:
            assert_equal_nested(a[k], b[k], f"{where}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert type(a) is type(b), where
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_equal_nested(x, y, f"{where}[{i}]")
    else:
        assert a == b or (a != a and b != b), f"{where}: {a!r} != {b!r}"


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batch: tuple[Tensor, Tensor],
    loss_fn: Callable[[Tensor, Tensor], Tensor] | None = None,
) -> float:
    """One plain step: forward, loss, backward, optimizer step; returns the loss."""
    x, y = batch
    optimizer.zero_grad()
    out = model(x)
    loss = (loss_fn or nn.functional.mse_loss)(out, y)
    loss.backward()
    optimizer.step()
    return float(loss.item())
