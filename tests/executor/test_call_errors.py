"""Calls that cannot work say why: keyword inputs, inference-mode state, stateful routing."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl


class Masked(nn.Module):
    def forward(self, x: Tensor, mask: Tensor, bias: Tensor) -> Tensor:
        return x * mask + bias


def masked_graph() -> fl.Graph:
    return (
        fl.Flow(nn.Identity()).input("mask", "bias").through(Masked()).using("mask", "bias").build()
    )


def test_inputs_are_accepted_by_their_declared_names() -> None:
    g = masked_graph()
    x, m, b = torch.ones(2, 2), torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.full((2, 2), 0.5)
    want = g(x, m, b)
    torch.testing.assert_close(g(x, mask=m, bias=b), want)
    torch.testing.assert_close(g(x, m, bias=b), want)
    torch.testing.assert_close(g(x, bias=b, mask=m), want)
    torch.testing.assert_close(g(x=x, mask=m, bias=b), want)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda g, x: g(x, masks=x, bias=x), "no input named 'masks'"),
        (lambda g, x: g(x, x, mask=x, bias=x), "'mask' is given twice"),
        (lambda g, x: g(x, mask=x), "misses 1 input: bias"),
    ],
    ids=["unknown", "twice", "missing"],
)
def test_wrong_keyword_inputs_are_named(call: object, message: str) -> None:
    with pytest.raises(fl.GraphError, match=message):
        call(masked_graph(), torch.ones(2, 2))  # type: ignore[operator]


class Accumulate(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(2))

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        return x + h * self.w


def test_state_written_under_inference_mode_says_what_happened_in_training() -> None:
    g = fl.Flow(Accumulate()).using("h").tag("h").through(nn.Tanh()).build()
    with torch.inference_mode():
        g(torch.ones(3, 2))
    with pytest.raises(fl.GraphError, match=r"written under torch.inference_mode\(\)") as info:
        g(torch.ones(3, 2)).sum().backward()
    assert "torch.no_grad()" in str(info.value)
    assert "reset_state()" in str(info.value)
    g.reset_state()
    g(torch.ones(3, 2)).sum().backward()  # the fix works


def stateful_branch() -> fl.Graph:
    return fl.Flow(Accumulate()).using("h").tag("h").build()


def test_a_per_sample_switch_refuses_a_stateful_branch_with_the_reason() -> None:
    g = (
        fl.Flow(nn.Identity())
        .switch(lambda x: (x[:, 0] > 0).long(), nn.Identity(), stateful_branch())
        .build()
    )
    with pytest.raises(fl.GraphError, match=r"branch 1 .* keeps state from call to call"):
        g(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))


def test_a_whole_batch_switch_runs_a_stateful_branch() -> None:
    g = fl.Flow(nn.Identity()).switch(lambda x: 1, nn.Identity(), stateful_branch()).build()
    with torch.no_grad():
        g(torch.ones(2, 2))
        torch.testing.assert_close(g(torch.ones(2, 2)), torch.full((2, 2), 2.0))


def test_a_sparse_gate_refuses_a_stateful_expert_with_the_reason() -> None:
    g = (
        fl.Flow(nn.Identity())
        .gate(fl.TopKRouter(2, 2, k=1), nn.Identity(), stateful_branch())
        .build()
    )
    with pytest.raises(fl.GraphError, match=r"expert 1 .* keeps state from call to call"):
        g(torch.randn(4, 2))
