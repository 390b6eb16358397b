"""`Flow.gate`: dense and sparse (top-k) mixtures of experts against hand-written sums."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl
from tests.support import (
    DOUBLE,
    IDENTITY,
    assert_same_as_oracle,
    fixed_linear,
    gradcheck_graph,
    linear64,
    rand64,
)

# ------------------------------------------------------------ goDl's numbers


def zero_router() -> fl.SoftmaxRouter:
    router = fl.SoftmaxRouter(2, 2)
    with torch.no_grad():
        router.proj.weight.zero_()
        router.proj.bias.zero_()
    return router


def test_equal_weights_average_the_experts() -> None:
    g = (
        fl.Flow(nn.Identity())
        .gate(zero_router(), fixed_linear(IDENTITY), fixed_linear(DOUBLE))
        .build()
    )
    assert g(torch.tensor([[2.0, 4.0]])).tolist() == [[3.0, 6.0]]


def test_a_router_bias_selects_the_first_expert() -> None:
    router = zero_router()
    with torch.no_grad():
        router.proj.bias.copy_(torch.tensor([10.0, -10.0]))
    g = fl.Flow(nn.Identity()).gate(router, fixed_linear(IDENTITY), fixed_linear(DOUBLE)).build()
    torch.testing.assert_close(g(torch.tensor([[2.0, 4.0]])), torch.tensor([[2.0, 4.0]]))


def test_a_using_reference_is_added_to_the_router_input() -> None:
    router = zero_router()
    with torch.no_grad():
        router.proj.weight.copy_(torch.eye(2))
    g = (
        fl.Flow(nn.Identity())
        .input("hint")
        .gate(router, fixed_linear(IDENTITY), fixed_linear(DOUBLE))
        .using("hint")
        .build()
    )
    x, hint = torch.tensor([[1.0, 1.0]]), torch.tensor([[0.0, 3.0]])
    w = torch.softmax(x + hint, -1)
    torch.testing.assert_close(g(x, hint), w[:, :1] * x + w[:, 1:] * 2 * x)


def test_parameters_are_the_entry_the_router_and_the_experts() -> None:
    g = (
        fl.Flow(nn.Linear(2, 2))
        .gate(fl.SoftmaxRouter(2, 2), nn.Linear(2, 2), nn.Linear(2, 2))
        .build()
    )
    assert len(list(g.parameters())) == 8
    assert [n for n, _ in g.named_parameters()][2:6] == [
        "gate_0.router.proj.weight",
        "gate_0.router.proj.bias",
        "gate_0.experts.0.weight",
        "gate_0.experts.0.bias",
    ]


# ------------------------------------------------------ oracle and gradcheck


def test_dense_gate_equals_the_weighted_sum() -> None:
    router = fl.SoftmaxRouter(3, 3).double()
    experts = [linear64(3, 3), nn.Tanh(), linear64(3, 3)]
    g = fl.Flow(nn.Identity()).gate(router, *experts).build()

    def oracle(x: Tensor) -> Tensor:
        w = router(x)
        return sum(w[:, i : i + 1] * e(x) for i, e in enumerate(experts))  # type: ignore[return-value]

    assert_same_as_oracle(g, oracle, rand64(5, 3))
    gradcheck_graph(g, rand64(3, 3))


def test_sigmoid_router_weights_need_not_sum_to_one() -> None:
    router = fl.SigmoidRouter(2, 2).double()
    g = fl.Flow(nn.Identity()).gate(router, nn.Identity(), nn.Identity()).build()
    x = rand64(4, 2)
    torch.testing.assert_close(g(x), router(x).sum(-1, keepdim=True) * x)


def test_weights_broadcast_over_sequence_outputs() -> None:
    router = fl.SoftmaxRouter(3, 2).double()
    experts = [linear64(3, 3), linear64(3, 3)]
    g = (
        fl.Flow(nn.Identity())
        .fork(lambda x: x.mean(1))
        .tag("summary")
        .gate(lambda x, s: router(s), *experts)
        .using("summary")
        .build()
    )

    def oracle(x: Tensor) -> Tensor:
        w = router(x.mean(1))  # [B, 2]
        return w[:, 0, None, None] * experts[0](x) + w[:, 1, None, None] * experts[1](x)

    assert_same_as_oracle(g, oracle, rand64(4, 5, 3), params=list(router.parameters()))


# --------------------------------------------------------------- top-k gate


class Recording(nn.Module):
    """A float64 linear expert that records the rows it was given."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lin = linear64(dim, dim)
        self.seen: list[Tensor] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(x.detach().clone())
        return torch.tanh(self.lin(x))


class DenseView(nn.Module):
    """The same router, without the `sparse` flag: the gate runs every expert."""

    def __init__(self, router: nn.Module) -> None:
        super().__init__()
        self.router = router

    def forward(self, x: Tensor) -> Tensor:
        out: Tensor = self.router(x)
        return out


def test_top_k_gate_equals_the_masked_dense_gate_and_experts_see_only_their_samples() -> None:
    router = fl.TopKRouter(4, 4, k=2).double()
    experts = [Recording(4) for _ in range(4)]
    sparse = fl.Flow(nn.Identity()).gate(router, *experts).build()
    dense = fl.Flow(nn.Identity()).gate(DenseView(router), *experts).build()
    x = rand64(16, 4)
    w = router(x).detach()

    def oracle(x: Tensor) -> Tensor:
        out: Tensor = dense(x)
        return out

    for e in experts:
        e.seen.clear()
    assert_same_as_oracle(sparse, oracle, x, none_is_zero=True)
    for i, e in enumerate(experts):
        routed = x.detach()[w[:, i] != 0]
        if len(routed):
            assert torch.equal(e.seen[0], routed), f"expert {i} saw other samples"
        else:
            assert len(e.seen) == 1, f"expert {i} has no sample but ran in the sparse gate"


def test_experts_that_receive_no_sample_do_not_run() -> None:
    router = fl.TopKRouter(2, 3, k=1).double()
    with torch.no_grad():
        router.proj.weight.zero_()
        router.proj.bias.copy_(torch.tensor([5.0, 0.0, -5.0]))
    experts = [Recording(2) for _ in range(3)]
    g = fl.Flow(nn.Identity()).gate(router, *experts).build()
    x = rand64(6, 2)
    p = torch.softmax(router.proj.bias, -1)[0]  # top-1 keeps the chosen expert's probability
    torch.testing.assert_close(g(x), p * experts[0](x))
    assert [len(e.seen) for e in experts] == [2, 0, 0]  # one call in the gate, one above


def test_top_k_gate_gradcheck() -> None:
    router = fl.TopKRouter(3, 3, k=2).double()
    g = fl.Flow(nn.Identity()).gate(router, linear64(3, 3), nn.Tanh(), linear64(3, 3)).build()
    gradcheck_graph(g, rand64(5, 3))


def test_top_k_weights_are_renormalised_over_the_k() -> None:
    router = fl.TopKRouter(3, 4, k=2).double()
    x = rand64(5, 3)
    logits = router.proj(x)
    full = torch.softmax(logits, -1)
    keep = torch.zeros_like(full).scatter(-1, logits.topk(2, -1).indices, 1.0)
    want = full * keep / (full * keep).sum(-1, keepdim=True)
    torch.testing.assert_close(router(x), want)


# ------------------------------------------------------------- runtime errors


def test_weights_with_the_wrong_number_of_experts_are_a_clear_error() -> None:
    g = fl.Flow(nn.Identity()).gate(lambda x: x, nn.Identity(), nn.Identity()).build()
    with pytest.raises(fl.GraphError) as info:
        g(torch.ones(4, 3))
    text = str(info.value)
    assert "gate_0: the router's weights" in text
    assert "[B, 2]" in text
    assert "Tensor[4, 3]" in text


def test_an_expert_that_drops_the_batch_dimension_is_a_clear_error() -> None:
    g = fl.Flow(nn.Identity()).gate(fl.SoftmaxRouter(3, 2), torch.sum, nn.Identity()).build()
    with pytest.raises(fl.GraphError, match="expert 0's output does not line up"):
        g(torch.ones(4, 3))
