"""Built-in routers, selectors and halts: their math, gradients and argument checks."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

import flowdl as fl
from tests.support import rand64


@pytest.mark.parametrize(
    ("router", "activation"),
    [(fl.SoftmaxRouter, lambda z: torch.softmax(z, -1)), (fl.SigmoidRouter, torch.sigmoid)],
)
def test_dense_routers_add_references_then_project(router: Any, activation: Any) -> None:
    r = router(3, 4).double()
    x, ref = rand64(5, 3), rand64(5, 3)
    torch.testing.assert_close(r(x, ref), activation(r.proj(x + ref)))
    assert torch.autograd.gradcheck(lambda a: r(a, ref), (x,))
    assert r.n_choices == 4


def test_top_k_router_gradcheck() -> None:
    r = fl.TopKRouter(3, 5, k=2).double()
    x = rand64(4, 3)
    assert torch.autograd.gradcheck(r, (x,))
    assert r.sparse
    assert r.k == 2
    assert r.n_choices == 5


def test_argmax_selector_is_per_sample_over_the_last_dimension() -> None:
    s = fl.ArgmaxSelector(3, 4)
    x = torch.randn(7, 3)
    assert torch.equal(s(x), s.proj(x).argmax(-1))
    assert s(x).shape == (7,)
    assert int(s(x).max()) < 4


def test_threshold_halt_is_a_scalar_without_gradient() -> None:
    h = fl.ThresholdHalt(1.5)
    state = torch.tensor([[1.0, 2.0], [0.0, 0.5]], requires_grad=True)
    out = h(state)
    assert out.shape == ()
    assert float(out) == 0.5
    assert not out.requires_grad


def test_learned_halt_scores_each_sample() -> None:
    h = fl.LearnedHalt(3).double()
    x = rand64(4, 3)
    torch.testing.assert_close(h(x), h.proj(x))
    assert h(x).shape == (4, 1)
    assert torch.autograd.gradcheck(h, (x,))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: fl.SoftmaxRouter(0, 2), r"SoftmaxRouter\(in_dim, n\): in_dim must be an int >= 1"),
        (lambda: fl.SigmoidRouter(2, 1.5), r"SigmoidRouter\(in_dim, n\): n must be an int >= 1"),
        (lambda: fl.TopKRouter(2, 3, k=4), r"k must be at most n \(k=4 > n=3\)"),
        (lambda: fl.TopKRouter(2, 3, k=0), r"k must be an int >= 1"),
        (lambda: fl.FixedSelector(-1), r"index must be an int >= 0"),
        (lambda: fl.ArgmaxSelector(2, True), r"n must be an int >= 1; received bool True"),
        (lambda: fl.ThresholdHalt("high"), r"threshold must be a number; received str"),
        (lambda: fl.LearnedHalt(0), r"LearnedHalt\(dim\): dim must be an int >= 1"),
    ],
)
def test_bad_arguments_are_clear_errors(make: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        make()


def test_built_ins_are_ordinary_modules() -> None:
    for module in [fl.TopKRouter(2, 3, 1), fl.FixedSelector(1), fl.ThresholdHalt(2)]:
        assert isinstance(module, nn.Module)
    assert repr(fl.TopKRouter(2, 3, 1)).startswith("TopKRouter(\n  k=1")
