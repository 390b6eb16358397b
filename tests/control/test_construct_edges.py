"""Constructs as modules, at their edges: state_dict keys of inner modules, selector
index dtypes, empty batches, which inner modules a gate resets, and how a nested graph's
fix reaches the error of the graph holding it."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl


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
