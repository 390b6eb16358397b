"""What the dynamic models are made of: experts, their spec, and the step modules of graphs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from flowdl._bench.pair import Batch, LossFn
from flowdl._graph import Graph

FORMULATIONS = ("index", "mask")
"""The two hand-written formulations: run each part on its own rows, or on every row
and select."""


def mlp(dim: int, hidden: int) -> nn.Sequential:
    """Linear–GELU–Linear: an expert, a branch, a head.

    Example:
        >>> mlp(4, 8)(torch.zeros(3, 4)).shape
        torch.Size([3, 4])
    """
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class Formulated(nn.Module):
    """A hand-written dynamic model with two formulations, chosen by `formulation`."""

    formulation = "index"

    def forward(self, x: Tensor) -> Tensor:
        if self.formulation == "index":
            return self.by_index(x)
        return self.by_mask(x)

    def by_index(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def by_mask(self, x: Tensor) -> Tensor:
        raise NotImplementedError


@dataclass
class DynamicModel:
    """One model of the dynamic suite.

    Attributes:
        name: its name in the suite.
        model: the hand-written module (a `Formulated`).
        graph: builds the flowdl graph from a copy of `model` (its submodules).
        make_batch: a fresh random batch.
        loss_fn: ``loss_fn(output, target)``.
        sizes: batch, widths, ... for the report.
        compiled: which formulation `torch.compile` gets (the one without data-dependent
            shapes: it compiles to one graph).
        formulation: how the graph is written, for the report.
    """

    name: str
    model: Formulated
    graph: Callable[[Formulated], Graph]
    make_batch: Callable[[torch.device], Batch]
    loss_fn: LossFn
    sizes: dict[str, int]
    compiled: str = "mask"
    formulation: str = ""
    lr: float = 1e-3


def mse(output: Tensor, target: Tensor) -> Tensor:
    """Mean squared error."""
    return nn.functional.mse_loss(output, target)


class Narrow(nn.Module):
    """Columns ``[start, start + width)`` of the last dimension: one head's slice.

    Example:
        >>> Narrow(1, 2)(torch.arange(4.0).reshape(1, 4))
        tensor([[1., 2.]])
    """

    def __init__(self, start: int, width: int) -> None:
        super().__init__()
        self.start, self.width = start, width

    def forward(self, x: Tensor) -> Tensor:
        return x.narrow(-1, self.start, self.width)


class StartScan(nn.Module):
    """A sequence ``[B, T, F + 1]`` (its last channel the length) -> the scan's first state
    ``[B, H + 3]``: ``h = 0``, the step ``t = 0``, the length, the sample's row.

    Example:
        >>> StartScan(3)(torch.ones(2, 5, 4)).tolist()[1]
        [0.0, 0.0, 0.0, 0.0, 1.0, 1.0]
    """

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden

    def forward(self, seq: Tensor) -> Tensor:
        b = seq.shape[0]
        rows = torch.arange(b, device=seq.device, dtype=seq.dtype).unsqueeze(1)
        return torch.cat([seq.new_zeros(b, self.hidden + 1), seq[:, 0, -1:], rows], dim=1)


class ScanStep(nn.Module):
    """One step of the scan: ``h = cell(seq[row, t], h)``, ``t += 1``.

    The sequence is a shared reference (the whole batch at every iteration); each
    state row knows its sample's row in it, so halted samples cost nothing.
    """

    def __init__(self, cell: nn.RNNCell) -> None:
        super().__init__()
        self.cell = cell

    def forward(self, state: Tensor, seq: Tensor) -> Tensor:
        h = state[:, : self.cell.hidden_size]
        t = state[:, -3]
        x_t = seq[state[:, -1].long(), t.long(), :-1]
        h = self.cell(x_t, h)
        return torch.cat([h, (t + 1).unsqueeze(1), state[:, -2:]], dim=1)


class ScanDone(nn.Module):
    """Halts a sample once its step reached its length: ``t - length + 0.5``."""

    def forward(self, state: Tensor) -> Tensor:
        return state[:, -3] - state[:, -2] + 0.5


class TakeHidden(nn.Module):
    """The hidden state of the scan's state."""

    def __init__(self, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden

    def forward(self, state: Tensor) -> Tensor:
        return state[:, : self.hidden]


class ResidualTanh(nn.Module):
    """``h + tanh(Linear(h))``: the halting model's loop body.

    Example:
        >>> ResidualTanh(3)(torch.zeros(2, 3)).shape
        torch.Size([2, 3])
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lin = nn.Linear(dim, dim)

    def forward(self, h: Tensor) -> Tensor:
        return h + torch.tanh(self.lin(h))
