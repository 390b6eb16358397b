"""`torch.export` with a dynamic batch: graphs of fixed structure export; others say why."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn
from torch.export import Dim, export

import flowdl as fl


def batch_dim() -> dict[str, object]:
    # forward(*inputs): the dynamic shapes of the first input, inside the varargs tuple
    return {"dynamic_shapes": (({0: Dim("batch", min=2, max=64)},),)}


def static_graph() -> fl.Graph:
    inner = fl.Flow(nn.Linear(4, 4)).through(nn.Tanh()).build()
    return (
        fl.Flow(nn.Linear(4, 4))
        .also(nn.Tanh())
        .loop(nn.Linear(4, 4))
        .for_(3)
        .gate(fl.SoftmaxRouter(4, 2), nn.Linear(4, 4), nn.Identity())
        .split(nn.Linear(4, 4), inner)
        .merge(fl.Add())
        .loop(fl.Flow(nn.Linear(4, 4)).tag("inside").build())
        .for_(2)
        .build()
    )


def test_a_graph_of_fixed_structure_exports_with_a_dynamic_batch() -> None:
    g = static_graph()
    program = export(g, (torch.randn(5, 4),), **batch_dim())  # type: ignore[arg-type]
    for batch in (2, 7, 33):
        x = torch.randn(batch, 4)
        torch.testing.assert_close(program.module()(x), g(x))


class Add(nn.Module):
    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        return x + h


def refused(g: fl.Graph, message: str) -> None:
    with pytest.raises(fl.GraphError, match=message):
        export(g, (torch.randn(5, 4),), **batch_dim())  # type: ignore[arg-type]


def test_a_graph_with_state_says_it_cannot_be_exported() -> None:
    refused(fl.Flow(Add()).using("h").tag("h").build(), "graph with state .'h'. cannot be exported")


def test_a_halting_loop_says_it_cannot_be_exported() -> None:
    g = (
        fl.Flow(nn.Identity())
        .loop(nn.Linear(4, 4))
        .while_(lambda s: (s[:, 0] > 0).float(), max_iter=3)
        .build()
    )
    refused(g, r"while_\(cond, max_iter=3\) loop cannot be exported")


def test_per_sample_routing_says_it_cannot_be_exported() -> None:
    switch = (
        fl.Flow(nn.Identity()).switch(fl.ArgmaxSelector(4, 2), nn.Linear(4, 4), nn.Identity())
    ).build()
    refused(switch, "per-sample .switch")
    gate = fl.Flow(nn.Identity()).gate(fl.TopKRouter(4, 2, k=1), nn.Linear(4, 4), nn.Tanh())
    refused(gate.build(), "sparse .gate")


def test_torch_compile_still_runs_a_halting_loop_with_graph_breaks() -> None:
    g = (
        fl.Flow(nn.Identity())
        .loop(lambda s: s - 1)
        .until(lambda s: (s[:, 0] <= 0).float(), max_iter=10)
        .build()
    )
    x = torch.tensor([[3.0], [1.0]])
    torch.testing.assert_close(torch.compile(g, backend="eager")(x), g(x))
