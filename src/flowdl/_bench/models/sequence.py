"""gru_seq and lstm_seq: a GRU cell unrolled in Python, and a fused two-layer LSTM."""

from __future__ import annotations

import copy

from torch import Tensor, nn

import flowdl as fl
from flowdl._bench.pair import ModelPair, mse, noise_regression, scaled
from flowdl._bench.protocol import Protocol

STEPS = 50
"""Sequence length of both models; it is structure, so the scale leaves it alone."""


class GRUSequence(nn.Module):
    """GRUCell unrolled over dim 1 from ``h = 0``, then Lin(hidden, n_out) on the last ``h``."""

    def __init__(self, n_in: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.cell = nn.GRUCell(n_in, hidden)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: Tensor) -> Tensor:
        h = x.new_zeros(x.shape[0], self.cell.hidden_size)
        for t in range(x.shape[1]):
            h = self.cell(x[:, t], h)
        out: Tensor = self.head(h)
        return out


class Scan(nn.Module):
    """Run a recurrent graph over dim 1 of a sequence and return its last output.

    The graph keeps its state in forward references; `Scan` starts every sequence
    from fresh state and turns on ``backprop_state``, so backward reaches every step.

    Example:
        >>> import torch
        >>> running_sum = fl.Flow(fl.StateAdd()).using("total").tag("total").build()
        >>> Scan(running_sum)(torch.ones(2, 5, 3))[0]
        tensor([5., 5., 5.])
    """

    def __init__(self, step: fl.Graph) -> None:
        super().__init__()
        self.step = step
        step.backprop_state = True

    def forward(self, sequence: Tensor) -> Tensor:
        step = self.step
        step.reset_state()
        out = sequence[:, 0]
        for t in range(sequence.shape[1]):
            out = step(sequence[:, t])
        step.reset_state()  # the last step's state holds the autograd graph: let it go
        return out


def gru_seq(scale: float, protocol: Protocol) -> ModelPair:
    """floDl's gru_seq: batch 128 of 50 × 256 inputs, GRUCell(256, 512), Lin(512, 256).

    Example:
        >>> from flowdl._bench.protocol import FLODL
        >>> gru_seq(0.02, FLODL).sizes
        {'batch': 3, 'steps': 50, 'input': 5, 'hidden': 10}
    """
    batch, n_in, hidden = scaled(128, scale), scaled(256, scale), scaled(512, scale)
    model = GRUSequence(n_in, hidden, n_in)
    twin = copy.deepcopy(model)
    step = fl.Flow(twin.cell).using("h").tag("h", init=(hidden,)).label("gru_step").build()
    return ModelPair(
        "gru_seq",
        model,
        twin,
        fl.Flow(Scan(step)).through(twin.head).build(),
        noise_regression((batch, STEPS, n_in), (batch, n_in)),
        mse,
        {"batch": batch, "steps": STEPS, "input": n_in, "hidden": hidden},
        cudnn_benchmark=False,
        formulation='a one-node graph `fl.Flow(cell).using("h").tag("h")` (recurrent state) '
        "run once per step by `Scan`, then `.through(head)`",
    )


class LSTMSequence(nn.Module):
    """Two-layer batch-first LSTM; Lin(hidden, n_out) on the last step's output."""

    def __init__(self, n_in: int, hidden: int, n_out: int) -> None:
        super().__init__()
        self.lstm = nn.LSTM(n_in, hidden, num_layers=2, batch_first=True)
        self.head = nn.Linear(hidden, n_out)

    def forward(self, x: Tensor) -> Tensor:
        states, _ = self.lstm(x)
        out: Tensor = self.head(states[:, -1])
        return out


def last_step(lstm_result: tuple[Tensor, object]) -> Tensor:
    """The last step of an ``nn.LSTM(batch_first=True)`` output."""
    return lstm_result[0][:, -1]


def lstm_seq(scale: float, protocol: Protocol) -> ModelPair:
    """floDl's lstm_seq: batch 128 of 50 × 256 inputs, LSTM(256, 512, 2 layers), Lin(512, 256).

    Example:
        >>> from flowdl._bench.protocol import FLODL
        >>> lstm_seq(0.02, FLODL).graph.levels
        (('input',), ('LSTM_0',), ('last_step_0',), ('Linear_0',))
    """
    batch, n_in, hidden = scaled(128, scale), scaled(256, scale), scaled(512, scale)
    model = LSTMSequence(n_in, hidden, n_in)
    twin = copy.deepcopy(model)
    return ModelPair(
        "lstm_seq",
        model,
        twin,
        fl.Flow(twin.lstm).through(last_step).through(twin.head).build(),
        noise_regression((batch, STEPS, n_in), (batch, n_in)),
        mse,
        {"batch": batch, "steps": STEPS, "input": n_in, "hidden": hidden},
        cudnn_benchmark=False,
        formulation="`fl.Flow(lstm).through(last_step).through(head)`",
    )
