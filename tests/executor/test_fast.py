"""Fast mode (`Graph.compile`): compiled static segments, dynamic decisions in the executor."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn
from torch._dynamo.utils import counters

import flowdl as fl
from tests.strategies import add, contains_bad, realise, specs
from tests.support import grads, linear64, rand64


def everything() -> fl.Graph:
    """A float64 graph with every kind of node: static ones and run-time decisions."""
    return (
        fl.Flow(linear64(6, 6))
        .through(nn.GELU())
        .also(linear64(6, 6))
        .through(fl.StateAdd())
        .using("memory")
        .tag("memory")
        .split(linear64(6, 6), nn.Tanh())
        .merge(fl.Add())
        .gate(fl.SoftmaxRouter(6, 2).double(), linear64(6, 6), nn.Identity())
        .loop(nn.Sequential(linear64(6, 6), nn.Tanh()))
        .for_(2)
        .switch(fl.ArgmaxSelector(6, 3).double(), linear64(6, 6), nn.Tanh(), nn.Identity())
        .gate(fl.TopKRouter(6, 3, k=1).double(), linear64(6, 6), nn.Tanh(), nn.Identity())
        .loop(nn.Sequential(linear64(6, 6), nn.Tanh()))
        .while_(lambda s: s.sum(-1), 4)
        .map(linear64(3, 3))
        .slices(2)
        .through(linear64(6, 2))
        .build()
    )


def test_fast_mode_equals_eager_in_outputs_gradients_and_state() -> None:
    g = everything()
    eager = copy.deepcopy(g)
    g.compile(backend="aot_eager")
    assert g.compiled
    assert not eager.compiled
    for _ in range(3):  # state carries from call to call in both
        x = rand64(7, 6)
        out = g(x)
        want = eager(x)
        torch.testing.assert_close(out, want, rtol=0, atol=1e-12)
        cotangent = torch.randn_like(out)
        got = grads(out, [x, *g.parameters()], cotangent)
        expected = grads(want, [x, *eager.parameters()], cotangent)
        for k, (a, b) in enumerate(zip(got, expected, strict=True)):
            if a is None or b is None:
                assert a is None, f"gradient {k}: present on one side only"
                assert b is None, f"gradient {k}: present on one side only"
            else:
                torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert torch.equal(g.tagged("memory"), eager.tagged("memory"))


def test_run_time_decisions_neither_break_nor_recompile_the_segments() -> None:
    torch._dynamo.reset()
    counters.clear()
    g = everything()
    g.compile(backend="eager")
    g(rand64(8, 6))
    graphs = counters["stats"]["unique_graphs"]
    assert graphs > 0
    for seed in range(5):  # other routes and halting, same shapes
        torch.manual_seed(seed)
        g(rand64(8, 6) * (seed + 1))
    assert counters["stats"]["unique_graphs"] == graphs
    assert not counters["graph_break"]


def test_segments_are_the_static_stretches() -> None:
    g = everything()
    g.compile(backend="eager")
    assert g._fast is not None
    kinds = ["segment" if hasattr(item, "compiled") else type(item[0]).__name__ for item in g._fast]
    assert kinds == [
        "segment",  # Linear, GELU, also
        "StateRead",
        "segment",  # StateAdd, split, merge, dense gate, for_ loop
        "Switch",
        "Gate",  # sparse
        "Loop",  # while_
        "Map",
        "segment",
    ]


def test_a_failing_node_is_named_as_in_eager_mode() -> None:
    def picky(x: Tensor) -> Tensor:
        if x.shape[0] > 3:
            raise ValueError("too many rows")
        return x

    g = fl.Flow(nn.Linear(2, 2)).through(picky).through(nn.ReLU()).build()
    g.compile(backend="eager")
    assert g(torch.randn(2, 2)).shape == (2, 2)
    with pytest.raises(fl.GraphError, match="picky_0 raised ValueError: too many rows") as info:
        g(torch.randn(5, 2))
    assert isinstance(info.value.__cause__, ValueError)


def test_the_context_is_checked_between_segments() -> None:
    g = everything()
    g.compile(backend="eager")
    ctx = fl.Context()
    ctx.cancel()
    with pytest.raises(fl.Cancelled):
        g(rand64(2, 6), ctx=ctx)


def test_nested_graphs_are_compiled_and_copies_are_eager() -> None:
    inner = fl.Flow(nn.Linear(4, 4)).through(nn.ReLU()).build()
    g = fl.Flow(nn.Identity()).through(inner).loop(inner).until(lambda s: s.sum(), 3).build()
    g.compile(backend="eager")
    assert inner.compiled
    twin = copy.deepcopy(g)
    assert not twin.compiled
    x = torch.randn(3, 4)
    torch.testing.assert_close(twin(x), g(x))


def test_compile_takes_keywords_only() -> None:
    g = fl.Flow(nn.Identity()).build()
    with pytest.raises(TypeError, match="as keywords"):
        g.compile("inductor")


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=specs, seed=st.integers(0, 2**16))
def test_random_nestings_compile_to_the_same_results(spec: Any, seed: int) -> None:
    node = realise(spec)
    if contains_bad(node):
        return
    torch.manual_seed(seed)
    g = add(fl.Flow(nn.Identity()), node).build()
    eager = copy.deepcopy(g)
    g.compile(backend="eager")
    x = torch.randn(5, 4, dtype=torch.float64)
    try:
        want = eager(x)
    except fl.GraphError:
        with pytest.raises(fl.GraphError):
            g(x)
        return
    torch.testing.assert_close(g(x), want, rtol=0, atol=1e-12)


def test_stateless_nested_graphs_are_inlined_into_one_segment() -> None:
    def block() -> fl.Graph:
        return fl.Flow(linear64(4, 4)).through(nn.GELU()).through(nn.LayerNorm(4).double()).build()

    g = (
        fl.Flow(linear64(4, 4))
        .also(block())
        .also(block())
        .loop(fl.Flow(nn.Identity()).also(block()))
        .for_(3)
        .tag("refine")
        .gate(fl.SoftmaxRouter(4, 2).double(), block(), block())
        .through(linear64(4, 2))
        .build()
    )
    eager = copy.deepcopy(g)
    g.compile(backend="eager")
    assert g._fast is not None
    assert len(g._fast) == 1
    assert hasattr(g._fast[0], "compiled")
    x = rand64(5, 4)
    out, want = g(x), eager(x)
    torch.testing.assert_close(out, want, rtol=0, atol=1e-12)
    cotangent = torch.randn_like(out)
    got = grads(out, [x, *g.parameters()], cotangent)
    expected = grads(want, [x, *eager.parameters()], cotangent)
    for a, b in zip(got, expected, strict=True):
        assert a is not None
        assert b is not None
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert g.iterations("refine").tolist() == [3] * 5


def test_nested_graphs_with_state_stay_in_the_executor() -> None:
    stateful = fl.Flow(nn.Identity()).through(fl.StateAdd()).using("m").tag("m").build()
    g = fl.Flow(nn.Linear(2, 2)).through(stateful).through(nn.ReLU()).build()
    eager = copy.deepcopy(g)
    g.compile(backend="eager")
    assert g._fast is not None
    assert [hasattr(item, "compiled") for item in g._fast] == [True, False, True]
    x = torch.randn(3, 2)
    for _ in range(3):  # the nested state accumulates the same way in both
        torch.testing.assert_close(g(x), eager(x))


def test_recurrent_modules_run_eagerly_between_segments() -> None:
    # Dynamo refuses nn.LSTM under fullgraph ("Attempted to wrap RNN, GRU, or LSTM"):
    # the step holding it, even inside a loop body, stays in the executor.
    class LastStep(nn.Module):
        def forward(self, out: tuple[torch.Tensor, Any]) -> torch.Tensor:
            return out[0][:, -1]

    class OneStepLSTM(nn.Module):  # a plain module holding an LSTM
        def __init__(self) -> None:
            super().__init__()
            self.lstm = nn.LSTM(4, 4, batch_first=True)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.lstm(x.unsqueeze(1))[0][:, -1]

    lstm = nn.LSTM(3, 4, batch_first=True).double()
    body = fl.Flow(nn.Identity()).also(OneStepLSTM()).build()
    g = fl.Flow(linear64(3, 3)).through(lstm).through(LastStep()).through(linear64(4, 4)).build()
    eager = copy.deepcopy(g)
    g.compile(backend="eager")
    assert g._fast is not None
    assert [hasattr(item, "compiled") for item in g._fast] == [True, False, True]
    x = rand64(2, 5, 3)
    torch.testing.assert_close(g(x), eager(x), rtol=0, atol=1e-12)
    looped = fl.Flow(linear64(4, 4)).loop(body.double()).for_(2).build()
    looped_eager = copy.deepcopy(looped)
    looped.compile(backend="eager")
    assert looped._fast is not None
    assert [hasattr(item, "compiled") for item in looped._fast] == [True, False]
    y = rand64(3, 4)
    torch.testing.assert_close(looped(y), looped_eager(y), rtol=0, atol=1e-12)
