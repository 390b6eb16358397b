"""`g.routing(tag)` and `g.collect_routing(tag)`: usage of gates and switches against
figures computed by hand from the same router weights or selector choices."""

from __future__ import annotations

import copy

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import flowdl as fl
from flowdl._control.gate import Gate
from flowdl._control.routing import usage_from_weights

D = 4


def experts(n: int) -> list[nn.Module]:
    return [nn.Linear(D, D).double() for _ in range(n)]


def gate_graph(router: nn.Module, n: int) -> fl.Graph:
    return fl.Flow(nn.Identity()).gate(router, *experts(n)).tag("moe").build()


class Choose(nn.Module):
    """A selector returning a fixed per-sample choice (or a whole-batch int)."""

    def __init__(self, choice: Tensor | int) -> None:
        super().__init__()
        self.choice = choice

    def forward(self, x: Tensor) -> Tensor | int:
        return self.choice


def switch_graph(choice: Tensor | int, n: int = 3) -> fl.Graph:
    return fl.Flow(nn.Identity()).switch(Choose(choice), *experts(n)).tag("route").build()


def test_per_sample_switch_against_hand_counts() -> None:
    choice = torch.tensor([2, 0, 2, 2, 1, 2, 0, 2])
    g = switch_graph(choice)
    assert g.routing("route") is None  # the first ask starts watching
    g(torch.randn(8, D, dtype=torch.float64))
    usage = g.routing("route")
    assert usage is not None
    hand = torch.tensor([(choice == i).sum().item() / 8 for i in range(3)])
    torch.testing.assert_close(usage.fraction, hand)
    assert usage.kind == "switch"
    assert usage.mean_weight is None
    assert usage.samples == 8
    assert usage.names == ("branch 0", "branch 1", "branch 2")
    with pytest.raises(ValueError, match="switch's selector gives none"):
        usage.balance_loss()


def test_whole_batch_switch_gives_its_branch_everything() -> None:
    g = switch_graph(1)
    g.routing("route")
    g(torch.randn(5, D, dtype=torch.float64))
    usage = g.routing("route")
    assert usage is not None
    assert usage.fraction.tolist() == [0.0, 1.0, 0.0]
    assert usage.samples == 5


def test_top_k_gate_against_hand_computation_with_gradients() -> None:
    torch.manual_seed(0)
    router = fl.TopKRouter(D, 5, k=2).double()
    g = gate_graph(router, 5)
    g.routing("moe")
    x = torch.randn(12, D, dtype=torch.float64)
    g(x)
    usage = g.routing("moe")
    assert usage is not None
    w = router(x)  # the same weights, written out by hand
    hand_fraction = torch.stack([(w[:, i] != 0).double().mean() for i in range(5)])
    torch.testing.assert_close(usage.fraction.double(), hand_fraction)
    assert usage.fraction.sum().item() == pytest.approx(2.0)
    torch.testing.assert_close(usage.mean_weight, w.mean(0))
    # the balance loss is differentiable and matches n * sum(f_i / sum f * P_i) by hand
    loss = usage.balance_loss()
    (grad,) = torch.autograd.grad(loss, router.proj.weight)
    hand = 5 * (hand_fraction / hand_fraction.sum() * w.mean(0)).sum()
    (hand_grad,) = torch.autograd.grad(hand, router.proj.weight)
    torch.testing.assert_close(loss, hand)
    torch.testing.assert_close(grad, hand_grad)


def test_soft_gate_counts_the_top_weight() -> None:
    torch.manual_seed(1)
    router = fl.SoftmaxRouter(D, 3).double()
    g = gate_graph(router, 3)
    g.routing("moe")
    x = torch.randn(3, 7, D, dtype=torch.float64)  # leading dimensions all count as samples
    g(x)
    usage = g.routing("moe")
    assert usage is not None
    w = router(x).reshape(-1, 3)
    hand = torch.tensor([(w.argmax(-1) == i).sum().item() / 21 for i in range(3)])
    torch.testing.assert_close(usage.fraction, hand.float())
    torch.testing.assert_close(usage.mean_weight, w.mean(0))
    assert usage.samples == 21
    assert usage.fraction.sum().item() == pytest.approx(1.0)


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.lists(st.sampled_from([0.0, 0.25, 0.5, 1.0]), min_size=3, max_size=3),
        min_size=1,
        max_size=9,
    )
)
def test_sparse_usage_is_the_share_of_non_zero_weights(rows: list[list[float]]) -> None:
    w = torch.tensor(rows, dtype=torch.float64)
    usage = usage_from_weights(w, sparse=True)
    for i in range(3):
        nonzero = sum(1 for row in rows if row[i] != 0) / len(rows)
        assert usage.fraction[i].item() == pytest.approx(nonzero)
        assert usage.mean_weight is not None
        assert usage.mean_weight[i].item() == pytest.approx(sum(r[i] for r in rows) / len(rows))


def test_unwatched_gate_keeps_nothing() -> None:
    g = gate_graph(fl.TopKRouter(D, 3, k=1).double(), 3)
    g(torch.randn(4, D, dtype=torch.float64))
    node = next(m for m in g.modules() if isinstance(m, Gate))
    assert node._routing is None
    assert node.routing_usage() is None


def test_collect_flush_and_trend() -> None:
    choices = [torch.tensor([0, 0, 1, 1]), torch.tensor([0, 1, 1, 1]), torch.tensor([2, 2, 2, 2])]
    selector = Choose(choices[0])
    g = fl.Flow(nn.Identity()).switch(selector, *experts(3)).tag("route").build()
    g.collect_routing("route")  # starts watching, buffers nothing
    assert g.flush() == {}
    for epoch in ([choices[0], choices[1]], [choices[2]]):
        for choice in epoch:
            selector.choice = choice
            g(torch.randn(4, D, dtype=torch.float64))
            g.collect_routing("route")
        means = g.flush()
    assert sorted(means) == ["route/usage/0", "route/usage/1", "route/usage/2"]
    assert g.trend("route/usage/0").values == ((0.5 + 0.25) / 2, 0.0)
    assert g.trend("route/usage/1").values == ((0.5 + 0.75) / 2, 0.0)
    assert g.trend("route/usage/2").values == (0.0, 1.0)


def test_gate_metrics_carry_mean_weights() -> None:
    g = gate_graph(fl.SoftmaxRouter(D, 2).double(), 2)
    g.collect_routing("moe")
    x = torch.randn(6, D, dtype=torch.float64)
    g(x)
    g.collect_routing("moe")
    usage = g.routing("moe")
    assert usage is not None
    assert usage.mean_weight is not None
    means = g.flush()
    assert means["moe/weight/1"] == pytest.approx(usage.mean_weight[1].item())
    assert means["moe/usage/0"] + means["moe/usage/1"] == pytest.approx(1.0)


def test_nested_graph_by_path() -> None:
    choice = torch.tensor([1, 1, 0, 1])
    inner = (
        fl.Flow(nn.Identity()).switch(Choose(choice), *experts(2)).tag("route").label("encoder")
    ).build()
    g = fl.Flow(inner).through(nn.Linear(D, 1).double()).build()
    assert g.routing("encoder.route") is None
    g(torch.randn(4, D, dtype=torch.float64))
    usage = g.routing("encoder.route")
    assert usage is not None
    assert usage.fraction.tolist() == [0.25, 0.75]
    g.collect_routing("encoder.route")
    assert g.flush() == {"encoder.route/usage/0": 0.25, "encoder.route/usage/1": 0.75}


def test_drawing_carries_the_figures() -> None:
    choice = torch.tensor([0, 1, 1, 1])
    g = switch_graph(choice, n=2)
    plain = g.dot()
    assert "%" not in plain
    assert "penwidth" not in plain.split("->", 1)[1]
    g.routing("route")
    g(torch.randn(4, D, dtype=torch.float64))
    dot = g.dot()
    edges = [line for line in dot.splitlines() if '"switch_0" -> "switch_0.branch_' in line]
    assert len(edges) == 2, dot
    assert 'label="0 25%"' in edges[0]
    assert 'penwidth="1.62"' in edges[0]
    assert 'label="1 75%"' in edges[1]
    assert 'penwidth="3.88"' in edges[1]
    gate = gate_graph(fl.SoftmaxRouter(D, 2).double(), 2)
    gate.routing("moe")
    gate(torch.randn(3, D, dtype=torch.float64))
    assert "w̄=" in gate.svg()


def test_a_tag_that_routes_nothing_is_refused() -> None:
    g = fl.Flow(nn.Linear(D, D)).tag("hidden").build()
    with pytest.raises(ValueError, match="routes nothing"):
        g.routing("hidden")
    with pytest.raises(KeyError):
        g.routing("nope")
    with pytest.raises(TypeError):
        g.collect_routing()


def test_fast_mode_reports_the_same_routing() -> None:
    torch.manual_seed(2)
    g = gate_graph(fl.TopKRouter(D, 3, k=1).double(), 3)
    x = torch.randn(10, D, dtype=torch.float64)
    g.routing("moe")
    g(x)
    eager = g.routing("moe")
    g.compile()
    g(x)
    fast = g.routing("moe")
    assert eager is not None
    assert fast is not None
    torch.testing.assert_close(fast.fraction, eager.fraction)
    torch.testing.assert_close(fast.mean_weight, eager.mean_weight)


def test_balance_loss_with_full_probabilities_reaches_unchosen_experts() -> None:
    torch.manual_seed(3)
    router = fl.TopKRouter(D, 4, k=2).double()  # renormalised over the two chosen
    with torch.no_grad():  # experts 2 and 3 are never chosen
        router.proj.bias.copy_(torch.tensor([50.0, 50.0, -50.0, -50.0]))
    g = gate_graph(router, 4)
    g.routing("moe")
    x = torch.randn(6, D, dtype=torch.float64)
    g(x)
    usage = g.routing("moe")
    assert usage is not None
    probabilities = torch.softmax(router.proj(x), -1)
    loss = usage.balance_loss(probabilities)
    share = usage.fraction.double() / usage.fraction.double().sum()
    torch.testing.assert_close(loss, 4 * (share * probabilities.mean(0)).sum())
    (grad,) = torch.autograd.grad(loss, router.proj.bias)
    unchosen = usage.fraction == 0
    assert unchosen.tolist() == [False, False, True, True]
    assert bool((grad[unchosen] != 0).all())  # the full softmax reaches them
    (sparse_grad,) = torch.autograd.grad(g.routing("moe").balance_loss(), router.proj.bias)
    assert torch.equal(sparse_grad[unchosen], torch.zeros_like(sparse_grad[unchosen]))
    with pytest.raises(ValueError, match="4 entries"):
        usage.balance_loss(probabilities[:, :3])


def test_a_copy_starts_empty_and_keeps_watching() -> None:
    g = gate_graph(fl.SoftmaxRouter(D, 2).double(), 2)
    g.routing("moe")
    g(torch.randn(3, D, dtype=torch.float64))
    copied = copy.deepcopy(g)
    assert copied.routing("moe") is None  # nothing of the original's last call
    copied(torch.randn(5, D, dtype=torch.float64))
    usage, original = copied.routing("moe"), g.routing("moe")
    assert usage is not None
    assert original is not None
    assert (usage.samples, original.samples) == (5, 3)
