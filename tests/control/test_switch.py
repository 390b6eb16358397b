"""`Flow.switch`: whole-batch and per-sample routing against each sample run alone."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl
from tests.support import (
    DOUBLE,
    Counting,
    assert_same_as_oracle,
    fixed_linear,
    gradcheck_graph,
    linear64,
    rand64,
)

TRIPLE = [[3.0, 0.0], [0.0, 3.0]]

# ------------------------------------------------------------ goDl's numbers


@pytest.mark.parametrize(("index", "want"), [(1, [[3.0, 6.0]]), (0, [[2.0, 4.0]])])
def test_a_fixed_selector_routes_the_batch(index: int, want: list[list[float]]) -> None:
    g = (
        fl.Flow(nn.Identity())
        .switch(fl.FixedSelector(index), fixed_linear(DOUBLE), fixed_linear(TRIPLE))
        .build()
    )
    assert g(torch.tensor([[1.0, 2.0]])).tolist() == want


def test_only_the_selected_branch_runs_and_gets_gradients() -> None:
    unused, chosen = Counting(), fixed_linear(DOUBLE)
    g = fl.Flow(nn.Identity()).switch(fl.FixedSelector(1), unused, chosen).build()
    g(torch.tensor([[1.0, 2.0]])).sum().backward()
    assert unused.calls == 0
    torch.testing.assert_close(chosen.bias.grad, torch.tensor([1.0, 1.0]))

    other = fixed_linear(DOUBLE)
    g = fl.Flow(nn.Identity()).switch(fl.FixedSelector(1), other, fixed_linear(TRIPLE)).build()
    g(torch.tensor([[1.0, 2.0]])).sum().backward()
    assert other.weight.grad is None
    assert other.bias.grad is None


def argmax_selector() -> fl.ArgmaxSelector:
    select = fl.ArgmaxSelector(2, 2)
    with torch.no_grad():
        select.proj.weight.copy_(torch.tensor([[-1.0, 1.0], [1.0, -1.0]]))
        select.proj.bias.zero_()
    return select


def test_argmax_selector_routes_each_sample_of_one_batch() -> None:
    # floDl takes the argmax of the flattened [B, n] logits, which breaks for B > 1
    g = (
        fl.Flow(nn.Identity())
        .switch(argmax_selector(), fixed_linear(DOUBLE), fixed_linear(TRIPLE))
        .build()
    )
    out = g(torch.tensor([[1.0, 2.0], [2.0, 1.0]]))
    assert out.tolist() == [[2.0, 4.0], [6.0, 3.0]]


def test_dropout_branches_are_identities_in_eval_mode() -> None:
    g = (
        fl.Flow(nn.Identity())
        .switch(fl.FixedSelector(0), nn.Dropout(0.9), nn.Dropout(0.9))
        .build()
        .eval()
    )
    x = torch.ones(3, 4)
    assert torch.equal(g(x), x)
    assert not g.switch_0.branches[0].training


def test_a_module_used_as_entry_and_branch_is_one_set_of_parameters() -> None:
    entry = nn.Linear(2, 2)
    g = fl.Flow(entry).switch(fl.FixedSelector(0), entry, nn.Linear(2, 2)).build()
    assert len(list(g.parameters())) == 4
    g = fl.Flow(entry).switch(argmax_selector(), entry, nn.Linear(2, 2)).build()
    assert len(list(g.parameters())) == 6


# ------------------------------------------------------------ per sample


class Branch(nn.Module):
    def __init__(self, dim: int, calls: list[int]) -> None:
        super().__init__()
        self.lin = linear64(dim, dim)
        self.calls = calls
        self.sizes: list[int] = []

    def forward(self, x: Tensor) -> Tensor:
        self.sizes.append(x.shape[0])
        return torch.tanh(self.lin(x))


def test_per_sample_switch_equals_running_each_sample_alone_through_its_branch() -> None:
    select = fl.ArgmaxSelector(3, 4).double()
    branches = [Branch(3, []) for _ in range(4)]
    g = fl.Flow(nn.Identity()).switch(select, *branches).build()
    x = rand64(12, 3)

    def oracle(x: Tensor) -> Tensor:
        choice = select(x)
        return torch.cat([branches[int(choice[i])](x[i : i + 1]) for i in range(x.shape[0])])

    assert_same_as_oracle(g, oracle, x)
    choice = select(x)
    for i, b in enumerate(branches):
        n = int((choice == i).sum())
        # one call per branch from the graph (if chosen), then one per sample from the oracle
        assert b.sizes[: 1 if n else 0] == ([n] if n else []), f"branch {i} ran on {b.sizes}"


def test_gradients_reach_only_the_branches_that_ran() -> None:
    branches = [linear64(2, 2) for _ in range(3)]
    g = fl.Flow(nn.Identity()).switch(lambda x: torch.tensor([0, 2, 0]), *branches).build()
    g(rand64(3, 2)).sum().backward()
    assert branches[0].weight.grad is not None
    assert branches[2].weight.grad is not None
    assert branches[1].weight.grad is None


def test_a_branch_no_sample_chose_does_not_run() -> None:
    counters = [Counting(), Counting(), Counting()]
    g = fl.Flow(nn.Identity()).switch(lambda x: torch.tensor([2, 0, 2]), *counters).build()
    g(torch.ones(3, 1))
    assert [c.calls for c in counters] == [1, 0, 1]


def test_every_sample_on_one_branch_runs_it_on_the_whole_batch() -> None:
    branch = Branch(2, [])
    g = fl.Flow(nn.Identity()).switch(lambda x: torch.ones(4, 1).long(), nn.Identity(), branch)
    x = rand64(4, 2)
    torch.testing.assert_close(g.build()(x), torch.tanh(branch.lin(x)))
    assert branch.sizes[0] == 4


def test_per_sample_switch_gradcheck() -> None:
    branches = [linear64(3, 2), nn.Sequential(linear64(3, 2), nn.Tanh())]
    g = fl.Flow(nn.Identity()).switch(lambda x: (x[:, 0] > 0).long(), *branches).build()
    x = rand64(6, 3)
    with torch.no_grad():
        x[:, 0] = torch.tensor([1.0, -1.0, 2.0, -2.0, 0.5, -0.5], dtype=torch.float64)
    gradcheck_graph(g, x)


def test_the_selector_receives_the_references() -> None:
    g = (
        fl.Flow(nn.Identity())
        .input("route")
        .switch(lambda x, route: route, lambda x: x, lambda x: -x)
        .using("route")
        .build()
    )
    out = g(torch.tensor([[1.0], [2.0]]), torch.tensor([1, 0]))
    assert out.tolist() == [[-1.0], [2.0]]


# ------------------------------------------------------------- runtime errors


def test_an_index_out_of_range_names_the_index_the_sample_and_the_range() -> None:
    g = fl.Flow(nn.Identity()).switch(lambda x: torch.tensor([0, 1, 5]), nn.Identity(), nn.Tanh())
    with pytest.raises(fl.GraphError) as info:
        g.build()(torch.ones(3, 1))
    text = str(info.value)
    assert "switch_0: the selector chose branch 5 for sample 2" in text
    assert "valid range [0, 2)" in text

    g2 = fl.Flow(nn.Identity()).switch(lambda x: -1, nn.Identity(), nn.Tanh()).build()
    with pytest.raises(fl.GraphError, match=r"branch -1 for the whole batch.*\[0, 2\)"):
        g2(torch.ones(3, 1))


@pytest.mark.parametrize(
    "choice", [torch.tensor([0.0, 1.0]), torch.tensor([True, False]), torch.zeros(2, 2).long()]
)
def test_a_selection_that_is_not_indices_is_a_clear_error(choice: Tensor) -> None:
    g = fl.Flow(nn.Identity()).switch(lambda x: choice, nn.Identity(), nn.Tanh()).build()
    with pytest.raises(fl.GraphError, match="neither a branch index nor one index per sample"):
        g(torch.ones(2, 1))


def test_branches_with_different_output_shapes_are_a_clear_error() -> None:
    g = (
        fl.Flow(nn.Identity())
        .switch(lambda x: torch.tensor([0, 1]), nn.Identity(), lambda x: torch.cat([x, x], -1))
        .build()
    )
    with pytest.raises(fl.GraphError, match="cannot be put back into one batch"):
        g(torch.ones(2, 3))
