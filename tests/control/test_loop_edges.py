"""Loops at their edges: a body that overflows on halted rows, stateful and in-place
bodies under per-sample halting, a flow built twice, copies of a halting loop."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl
from tests.support import fixed_linear


class Exp(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(1, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return torch.exp(self.w * x)


def test_a_body_that_overflows_on_halted_rows_keeps_gradients_finite() -> None:
    body = Exp()
    g = fl.Flow(nn.Identity()).loop(body).until(lambda s: s.squeeze(-1) - 50, 5).build()
    x = torch.tensor([[5.0], [0.5]], dtype=torch.float64, requires_grad=True)
    g(x).sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert body.w.grad is not None
    assert torch.isfinite(body.w.grad).all()

    def alone(row: Tensor) -> Tensor:
        for i in range(5):
            row = body(row)
            if i < 4 and float(row.detach().squeeze()) > 50:
                break
        return row

    x2 = x.detach().clone().requires_grad_()
    torch.cat([alone(x2[i : i + 1]) for i in range(2)]).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_a_stateful_body_under_per_sample_halting_equals_each_sample_alone_across_calls() -> None:
    def make() -> fl.Graph:
        cell = fl.Flow(fixed_linear([[1.0, 0.0], [0.0, 1.0]], [1.0, 1.0]))
        cell = cell.through(fl.StateAdd()).using("h").tag("h")
        return fl.Flow(nn.Identity()).loop(cell).until(lambda s: s.sum(-1) - 6, 4).build()

    g = make()
    singles = [make(), make()]
    x = torch.tensor([[3.0, 3.0], [0.0, 0.0]])
    for _ in range(2):
        out = g(x)
        want = torch.cat([singles[i](x[i : i + 1]) for i in range(2)])
        torch.testing.assert_close(out, want)


def test_an_in_place_body_leaves_halted_samples_and_the_input_alone() -> None:
    g = (
        fl.Flow(nn.Identity())
        .loop(lambda s: s.mul_(2))
        .while_(lambda s: s.sum(-1) - 10, 10)
        .build()
    )
    x = torch.tensor([[1.0, 1.0], [3.0, 3.0], [20.0, 0.0]])
    with torch.no_grad():
        out = g(x.clone())
    assert out.tolist() == [[8.0, 8.0], [6.0, 6.0], [20.0, 0.0]]


def test_an_in_place_stateful_body_is_a_clear_error() -> None:
    class InPlace(nn.Module):
        def reset(self, batch_size: int, device: torch.device) -> None:
            pass

        def forward(self, s: Tensor) -> Tensor:
            return s.mul_(2)

    g = fl.Flow(nn.Identity()).loop(InPlace()).until(lambda s: s.sum(-1) - 5, 5).build()
    with torch.no_grad(), pytest.raises(fl.GraphError, match="changed the state in place"):
        g(torch.tensor([[1.0], [10.0]]))


def test_each_build_of_a_flow_observes_its_own_loop() -> None:
    flow = fl.Flow(nn.Identity()).loop(lambda x: x + 1).for_(2).tag("t")
    g1, g2 = flow.build(), flow.build()
    g1(torch.zeros(3, 1))
    g2(torch.zeros(1, 1))
    assert g1.iterations("t").tolist() == [2, 2, 2]
    assert g2.iterations("t").tolist() == [2]
    assert g1.loop_0 is not g2.loop_0


def test_copies_keep_the_loop_modes() -> None:
    g = fl.Flow(nn.Identity()).loop(Exp()).until(lambda s: s.squeeze(-1) - 50, 5).build()
    twin = copy.deepcopy(g)
    x = torch.tensor([[5.0], [0.5]], dtype=torch.float64)
    torch.testing.assert_close(twin(x), g(x))
