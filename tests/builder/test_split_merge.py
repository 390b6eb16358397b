"""`split` / `merge` with `Add`, `Mean`, `Cat` and any callable; `tag_group`."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl
from tests.support import (
    IDENTITY,
    assert_same_as_oracle,
    fixed_linear,
    gradcheck_graph,
    linear64,
    rand64,
)


def _branches() -> tuple[nn.Linear, nn.Linear, nn.Linear]:
    return linear64(3, 4), linear64(3, 4), linear64(3, 4)


@pytest.mark.parametrize(
    ("merge", "combine"),
    [
        (fl.Add(), lambda *xs: xs[0] + xs[1] + xs[2]),
        (fl.Mean(), lambda *xs: (xs[0] + xs[1] + xs[2]) / 3),
        (fl.Cat(dim=-1), lambda *xs: torch.cat(xs, dim=-1)),
        (fl.Cat(dim=0), lambda *xs: torch.cat(xs, dim=0)),
        (lambda a, b, c: a * b - c, lambda a, b, c: a * b - c),
    ],
    ids=["add", "mean", "cat-last", "cat-0", "callable"],
)
def test_merge_equals_hand_written_module(merge: object, combine: object) -> None:
    entry = linear64(2, 3)
    a, b, c = _branches()
    g = fl.Flow(entry).split(a, b, c).merge(merge).build()

    def oracle(x: Tensor) -> Tensor:
        h = entry(x)
        return combine(a(h), b(h), c(h))  # type: ignore[operator]

    assert_same_as_oracle(g, oracle, rand64(5, 2))
    gradcheck_graph(g, rand64(2, 2))


def test_branches_are_one_level_and_run_in_argument_order() -> None:
    order: list[str] = []

    def branch(name: str):  # type: ignore[no-untyped-def]
        def run(x: Tensor) -> Tensor:
            order.append(name)
            return x

        run.__name__ = name
        return run

    g = fl.Flow(nn.Identity()).split(branch("a"), branch("b"), branch("c")).merge(fl.Add()).build()
    g(torch.zeros(1))
    assert order == ["a", "b", "c"]
    assert ("a_0", "b_0", "c_0") in g.levels


def test_merge_module_with_parameters() -> None:
    proj = linear64(8, 2)
    a, b = linear64(3, 4), linear64(3, 4)
    cat_proj = lambda p, q: proj(torch.cat([p, q], -1))  # noqa: E731
    g = fl.Flow(nn.Identity()).split(a, b).merge(cat_proj).build()
    assert_same_as_oracle(
        g,
        lambda x: proj(torch.cat([a(x), b(x)], -1)),
        rand64(4, 3),
        params=[*a.parameters(), *b.parameters(), *proj.parameters()],
    )


def test_tag_group_names_each_branch() -> None:
    g = (
        fl.Flow(nn.Identity())
        .split(lambda x: x + 1, lambda x: x * 2, lambda x: -x)
        .tag_group("head")
        .merge(fl.Add())
        .build()
    )
    g(torch.tensor([1.0]))
    assert g.tag_groups == {"head": ("head_0", "head_1", "head_2")}
    assert [g.tagged(f"head_{i}").item() for i in range(3)] == [2.0, 2.0, -1.0]


def test_group_members_are_references() -> None:
    a, b = linear64(2, 2), linear64(2, 2)
    g = (
        fl.Flow(nn.Identity())
        .split(a, b)
        .tag_group("h")
        .merge(fl.Add())
        .through(lambda s, h1: s * h1)
        .using("h_1")
        .build()
    )
    assert_same_as_oracle(g, lambda x: (a(x) + b(x)) * b(x), rand64(3, 2))
    gradcheck_graph(g, rand64(2, 2))


def test_godl_split_merge() -> None:
    # goDl SplitMerge: Split(I+1, 2I).Merge(Add) on [1,2] -> [4,7]
    g = (
        fl.Flow(fixed_linear(IDENTITY))
        .split(fixed_linear(IDENTITY, [1.0, 1.0]), fixed_linear([[2.0, 0.0], [0.0, 2.0]]))
        .merge(fl.Add())
        .build()
    )
    torch.testing.assert_close(g(torch.tensor([[1.0, 2.0]])), torch.tensor([[4.0, 7.0]]))


def test_godl_split_merge_backward() -> None:
    # branches [1,0] and [0,1] on [3,5] -> 8, both branches get gradients
    left, right = fixed_linear([[1.0, 0.0]]), fixed_linear([[0.0, 1.0]])
    g = fl.Flow(nn.Identity()).split(left, right).merge(fl.Add()).build()
    out = g(torch.tensor([[3.0, 5.0]]))
    assert out.item() == 8.0
    out.sum().backward()
    assert left.weight.grad is not None
    assert right.weight.grad is not None


def test_godl_parallel_levels_and_backward() -> None:
    # 3-way split: one level of 3 nodes; [1,0],[0,1],[1,1] on [2,3] -> 10; all get grads
    heads = [fixed_linear([[1.0, 0.0]]), fixed_linear([[0.0, 1.0]]), fixed_linear([[1.0, 1.0]])]
    g = fl.Flow(nn.Identity()).split(*heads).merge(fl.Add()).build()
    assert sorted(len(level) for level in g.levels)[-1] == 3
    for _ in range(20):
        out = g(torch.tensor([[2.0, 3.0]]))
        assert out.item() == 10.0
    out.sum().backward()
    assert all(h.weight.grad is not None for h in heads)


def test_split_using_feeds_every_branch() -> None:
    # goDl SplitUsing: Split(Add, Add).Using("ctx").Merge(Add) on [1,3] -> [4,12]
    g = (
        fl.Flow(nn.Identity())
        .tag("ctx")
        .split(fl.Add(), fl.Add())
        .using("ctx")
        .merge(fl.Add())
        .build()
    )
    torch.testing.assert_close(g(torch.tensor([1.0, 3.0])), torch.tensor([4.0, 12.0]))


def test_merge_references_come_after_the_branches() -> None:
    seen: list[int] = []

    def merge(*xs: Tensor) -> Tensor:
        seen.append(len(xs))
        return xs[0] + xs[1] - xs[2]

    g = (
        fl.Flow(nn.Identity())
        .tag("x")
        .split(lambda x: x, lambda x: 2 * x)
        .merge(merge)
        .using("x")
        .build()
    )
    torch.testing.assert_close(g(torch.tensor([5.0])), torch.tensor([10.0]))
    assert seen == [3]
