"""Constructs inside the rest of PyTorch: nested state, copies, devices, torch.compile."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl
from tests.support import gradcheck_graph, linear64, rand64


def accumulator() -> fl.Graph:
    """A nested graph whose output is the running sum of its inputs across calls."""
    return fl.Flow(nn.Identity()).through(fl.StateAdd()).using("m").tag("m").build()


def test_nested_graphs_keep_their_state_as_experts_and_branches() -> None:
    expert = accumulator()
    g = fl.Flow(nn.Identity()).gate(lambda x: torch.ones(x.shape[0], 2), expert, nn.Identity())
    gate = g.build()
    x = torch.tensor([[1.0]])
    assert [gate(x).item() for _ in range(3)] == [2.0, 3.0, 4.0]  # (1, 2, 3) + x

    branch = accumulator()
    switch = fl.Flow(nn.Identity()).switch(fl.FixedSelector(1), nn.Identity(), branch).build()
    assert [switch(x).item() for _ in range(3)] == [1.0, 2.0, 3.0]
    switch.reset_state()
    assert switch(x).item() == 1.0


def test_the_context_reaches_nested_experts() -> None:
    ctx = fl.Context()

    def cancel(x: Tensor) -> Tensor:
        ctx.cancel()
        return x

    never = []
    expert = fl.Flow(cancel).through(lambda x: never.append(1) or x).build()
    g = fl.Flow(nn.Identity()).gate(fl.SoftmaxRouter(2, 2), expert, nn.Identity()).build()
    with pytest.raises(fl.Cancelled):
        g(torch.ones(1, 2), ctx=ctx)
    assert never == []


def test_deepcopy_gives_independent_constructs() -> None:
    g = (
        fl.Flow(nn.Linear(3, 3))
        .gate(fl.TopKRouter(3, 3, k=2), nn.Linear(3, 3), nn.Linear(3, 3), nn.Tanh())
        .loop(nn.Linear(3, 3))
        .for_(2)
        .build()
    )
    twin = copy.deepcopy(g)
    x = torch.randn(4, 3)
    torch.testing.assert_close(twin(x), g(x))
    with torch.no_grad():
        for p in twin.parameters():
            p.add_(1.0)
    assert not torch.allclose(twin(x), g(x))
    assert twin.gate_0.experts[0] is twin.gate_0.experts.get_submodule("0")


def test_state_dict_round_trip_and_dtype_moves() -> None:
    def make() -> fl.Graph:
        return (
            fl.Flow(nn.Identity())
            .switch(fl.ArgmaxSelector(3, 2), nn.Linear(3, 3), nn.Linear(3, 3))
            .map(nn.Linear(3, 3))
            .each()
            .build()
        )

    a, b = make(), make()
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 3)
    torch.testing.assert_close(b(x), a(x))
    assert "switch_0.branches.1.weight" in a.state_dict()
    assert a.double()(x.double()).dtype == torch.float64


def test_torch_compile_runs_a_loop_and_a_gate() -> None:
    g = (
        fl.Flow(nn.Linear(4, 4))
        .loop(nn.Sequential(nn.Linear(4, 4), nn.Tanh()))
        .for_(3)
        .gate(fl.SoftmaxRouter(4, 2), nn.Linear(4, 4), nn.Identity())
        .build()
    )
    x = torch.randn(2, 4)
    compiled = torch.compile(g, backend="eager")
    torch.testing.assert_close(compiled(x), g(x))


def test_gradcheck_of_map_each_and_batch_halting() -> None:
    body = linear64(3, 3)
    each = fl.Flow(nn.Identity()).map(nn.Sequential(body, nn.Tanh())).each().build()
    gradcheck_graph(each, rand64(3, 3))
    halting = (
        fl.Flow(nn.Identity())
        .loop(nn.Sequential(linear64(3, 3), nn.Tanh()))
        .until(lambda s: torch.tensor(-1.0), 3)
        .build()
    )
    gradcheck_graph(halting, rand64(2, 3))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_constructs_on_cuda_match_the_cpu() -> None:
    g = (
        fl.Flow(nn.Linear(8, 8))
        .gate(fl.TopKRouter(8, 4, k=2), *[nn.Linear(8, 8) for _ in range(4)])
        .switch(fl.ArgmaxSelector(8, 3), nn.Linear(8, 8), nn.Tanh(), nn.Identity())
        .loop(nn.Sequential(nn.Linear(8, 8), nn.Tanh()))
        .while_(fl.LearnedHalt(8), 5)
        .tag("loop")
        .map(nn.Linear(4, 4))
        .slices(2)
        .build()
        .double()
    )
    x = torch.randn(64, 8, dtype=torch.float64)
    want = g(x)
    counts = g.iterations("loop")
    gpu = copy.deepcopy(g).cuda()
    got = gpu(x.cuda())
    torch.testing.assert_close(got.cpu(), want)
    assert torch.equal(gpu.iterations("loop").cpu(), counts)
    got.sum().backward()
    assert all(p.grad is None or p.grad.is_cuda for p in gpu.parameters())
