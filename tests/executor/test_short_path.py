"""The short path of a call (`run_lean`): a graph with nothing to do but its steps.

A graph without state, tags or resets (own or nested), not profiled and not in fast
mode, called eagerly without a context, runs its steps straight from ``forward`` (a
nested residual block, an expert, a loop body). It must compute, fail, run hooks and
hand over to the full call exactly as the full call does.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl
from flowdl._errors import ControlFlowError


def block(dim: int) -> tuple[nn.Linear, nn.LayerNorm, fl.Graph]:
    lin, norm = nn.Linear(dim, dim).double(), nn.LayerNorm(dim).double()
    body = fl.Flow(nn.Identity()).also(fl.Flow(lin).through(nn.GELU()).through(norm)).build()
    return lin, norm, body


def test_a_nested_loop_body_on_the_short_path_equals_the_hand_written_loop() -> None:
    torch.manual_seed(0)
    lin, norm, body = block(5)
    head = nn.Linear(5, 3).double()
    g = fl.Flow(nn.Identity()).loop(body).for_(4).through(head).build()
    assert body._lean is not None  # (the loop's reset() keeps g on the full call)
    x = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    params = [x, *lin.parameters(), *norm.parameters(), *head.parameters()]

    def by_hand(x: Tensor) -> Tensor:
        for _ in range(4):
            x = x + norm(torch.nn.functional.gelu(lin(x)))
        out: Tensor = head(x)
        return out

    ours = g(x)
    theirs = by_hand(x)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=0)
    for a, b in zip(
        torch.autograd.grad(ours.square().sum(), params),
        torch.autograd.grad(theirs.square().sum(), params),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    assert torch.autograd.gradcheck(lambda x: g(x), (x.detach().requires_grad_(),))
    assert body._first_call is not None  # the observation clock starts on this path too


class Resettable(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return x

    def reset(self, batch: int, device: torch.device) -> None:
        pass


@pytest.mark.parametrize(
    "graph",
    [
        lambda: fl.Flow(nn.ReLU()).tag("r").build(),
        lambda: fl.Flow(lambda x, h: x + h).using("h").tag("h").build(),
        lambda: fl.Flow(nn.ReLU()).through(fl.Flow(nn.ReLU()).tag("inner").build()).build(),
        lambda: fl.Flow(Resettable()).build(),
    ],
    ids=["tags", "state", "nested tags", "reset"],
)
def test_a_graph_with_more_to_do_takes_the_full_call(graph: Callable[[], fl.Graph]) -> None:
    assert graph()._lean is None


def test_profiling_and_fast_mode_leave_the_short_path_and_come_back() -> None:
    g = fl.Flow(nn.Linear(2, 2)).through(nn.ReLU()).build()
    assert g._lean is not None
    g.enable_profiling()
    assert g._lean is None
    g(torch.randn(1, 2))
    assert g.profile() is not None  # the profiled call ran through the instrument
    g.disable_profiling()
    assert g._lean is not None
    g.compile(backend="eager")
    assert g._lean is None
    assert g.compiled


def test_hooks_of_a_nested_graph_run_on_the_short_path() -> None:
    body = fl.Flow(nn.Identity()).also(nn.Linear(3, 3)).build()
    g = fl.Flow(nn.Identity()).loop(body).for_(3).build()
    seen: list[int] = []
    body.register_forward_pre_hook(lambda m, args: (args[0] * 0,))
    body.register_forward_hook(lambda m, args, out: seen.append(1))
    out = g(torch.ones(2, 3))
    assert len(seen) == 3
    last = body(torch.zeros(2, 3))  # the pre-hook zeroed every iteration's input
    torch.testing.assert_close(out, last)


def test_a_failing_step_on_the_short_path_names_the_node() -> None:
    body = fl.Flow(nn.Identity()).through(nn.Linear(4, 4)).build()
    g = fl.Flow(nn.Identity()).loop(body).for_(2).build()
    assert body._lean is not None
    with pytest.raises(fl.GraphError, match="Linear") as info:
        body(torch.ones(2, 3))
    assert isinstance(info.value.__cause__, RuntimeError)
    with pytest.raises(fl.GraphError, match="loop body") as outer:
        g(torch.ones(2, 3))
    assert isinstance(outer.value.__cause__, ControlFlowError)
    assert "Linear_0" in str(outer.value)
    with pytest.raises(fl.GraphError, match="input"):
        body(torch.ones(2, 4), torch.ones(2, 4))


def test_a_context_or_keywords_send_the_call_to_the_full_path() -> None:
    calls: list[int] = []
    body = fl.Flow(nn.Identity()).through(lambda x: calls.append(1) or x).build()
    g = fl.Flow(nn.Identity()).loop(body).for_(5).build()
    ctx = fl.Context()
    ctx.cancel()
    with pytest.raises(fl.Cancelled):
        body(torch.ones(1), ctx=ctx)
    with pytest.raises(fl.Cancelled):
        g(torch.ones(1), ctx=ctx)
    assert calls == []
    scale = fl.Flow(nn.Identity()).through(lambda x: x * 2).build()
    assert scale._lean is not None
    with pytest.raises(fl.GraphError, match="m"):  # an unknown keyword is named, as ever
        scale(torch.ones(2), m=torch.zeros(2))
    mask = fl.Flow(nn.Identity()).input("m").through(lambda x, m: x * m).using("m").build()
    torch.testing.assert_close(mask(torch.ones(2), m=torch.zeros(2)), torch.zeros(2))
