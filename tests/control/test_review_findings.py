"""Regression tests: overflow on halted rows, state_dict keys, stateful bodies under
per-sample halting, in-place bodies, graphs built twice, unusual index dtypes, empty
batches."""

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


def test_state_dict_names_each_inner_module_once_and_loads_back() -> None:
    g = (
        fl.Flow(nn.Identity())
        .loop(nn.Linear(4, 4))
        .for_(2)
        .gate(fl.SoftmaxRouter(4, 2), nn.Linear(4, 4), nn.Identity())
        .switch(fl.ArgmaxSelector(4, 2), nn.Linear(4, 4), nn.Identity())
        .map(nn.Linear(4, 4))
        .each()
        .build()
    )
    keys = list(g.state_dict())
    assert not [k for k in keys if "receiver" in k]
    assert len(keys) == len(set(keys)) == 12
    state = {k: torch.zeros_like(v) for k, v in g.state_dict().items()}
    g.load_state_dict(state)
    assert all(not p.any() for p in g.parameters())


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


def test_unsigned_and_narrow_indices_route_per_sample() -> None:
    for dtype in (torch.uint8, torch.int8, torch.int32):
        choice = torch.tensor([1, 0, 1], dtype=dtype)
        g = fl.Flow(nn.Identity()).switch(lambda x, c=choice: c, lambda x: x, lambda x: -x).build()
        assert g(torch.tensor([[1.0], [2.0], [3.0]])).tolist() == [[-1.0], [2.0], [-3.0]]


def test_a_nested_graphs_fix_reaches_the_top_level_error() -> None:
    inner = fl.Flow(nn.Identity()).through(fl.Add()).using("h").tag("h").build()
    g = fl.Flow(nn.Identity()).loop(inner).for_(2).build()
    g(torch.ones(3, 2))
    with pytest.raises(fl.GraphError, match="reset_state"):
        g(torch.ones(2, 2))


def test_empty_batches() -> None:
    g = fl.Flow(nn.Identity()).map(nn.Linear(2, 3)).batched().slices(2).build()
    assert g(torch.ones(0, 4)).shape == (0, 6)
    assert float(fl.ThresholdHalt(1.0)(torch.ones(0, 3))) == float("-inf")


def test_a_sparse_gate_resets_its_router_but_not_its_experts() -> None:
    class Resets(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.sizes: list[int] = []

        def reset(self, batch_size: int, device: torch.device) -> None:
            self.sizes.append(batch_size)

        def forward(self, x: Tensor) -> Tensor:
            return x

    expert = Resets()
    g = fl.Flow(nn.Identity()).gate(fl.TopKRouter(2, 2, k=1), expert, nn.Identity()).build()
    g(torch.randn(4, 2))
    assert expert.sizes == []
    dense = fl.Flow(nn.Identity()).gate(fl.SoftmaxRouter(2, 2), expert, nn.Identity()).build()
    dense(torch.randn(4, 2))
    assert expert.sizes == [4]


def test_copies_keep_the_loop_modes() -> None:
    g = fl.Flow(nn.Identity()).loop(Exp()).until(lambda s: s.squeeze(-1) - 50, 5).build()
    twin = copy.deepcopy(g)
    x = torch.tensor([[5.0], [0.5]], dtype=torch.float64)
    torch.testing.assert_close(twin(x), g(x))
