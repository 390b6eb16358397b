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


# ------------------------------------------------- top-k: the router learns


@pytest.mark.parametrize(("k", "renormalize"), [(1, None), (1, False), (2, False), (2, True)])
def test_top_k_router_gradcheck_for_every_k(k: int, renormalize: bool | None) -> None:
    torch.manual_seed(k)
    r = fl.TopKRouter(3, 4, k=k, renormalize=renormalize).double()
    x = rand64(5, 3)
    assert torch.autograd.gradcheck(r, (x,))
    names = [name for name, _ in r.named_parameters()]
    params = tuple(p.detach().clone().requires_grad_() for p in r.parameters())

    def of_params(*ps: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = torch.func.functional_call(r, dict(zip(names, ps, strict=True)), (x,))
        return out

    assert torch.autograd.gradcheck(of_params, params)


@pytest.mark.parametrize(("k", "renormalize"), [(1, None), (2, False), (3, False)])
def test_top_k_weights_are_the_full_softmax_at_the_chosen_experts(
    k: int, renormalize: bool | None
) -> None:
    r = fl.TopKRouter(3, 5, k=k, renormalize=renormalize).double()
    x = rand64(6, 3)
    logits = r.proj(x)
    full = torch.softmax(logits, -1)
    keep = torch.zeros_like(full).scatter(-1, logits.topk(k, -1).indices, 1.0)
    torch.testing.assert_close(r(x), full * keep, rtol=0, atol=1e-15)
    assert not r.renormalize


def test_top_k_renormalises_by_default_from_k_2() -> None:
    assert fl.TopKRouter(3, 5, k=2).renormalize
    assert not fl.TopKRouter(3, 5, k=1).renormalize
    assert repr(fl.TopKRouter(3, 5, k=2, renormalize=False)).startswith(
        "TopKRouter(\n  k=2, renormalize=False"
    )


def test_a_top_1_router_receives_a_gradient() -> None:
    r = fl.TopKRouter(3, 4, k=1).double()
    x = rand64(8, 3)
    cotangent = rand64(8, 4).detach()
    (r(x) * cotangent).sum().backward()
    assert r.proj.weight.grad is not None
    assert r.proj.bias.grad is not None
    assert r.proj.weight.grad.abs().sum() > 1e-3
    assert r.proj.bias.grad.abs().sum() > 1e-3


def test_renormalising_a_single_expert_is_refused() -> None:
    with pytest.raises(ValueError, match=r"renormalize=True with k=1 .* never receive a gradient"):
        fl.TopKRouter(3, 4, k=1, renormalize=True)
    with pytest.raises(ValueError, match=r"renormalize must be True, False or None"):
        fl.TopKRouter(3, 4, k=2, renormalize=1)  # type: ignore[arg-type]


class Negate(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -x


def test_a_top_1_mixture_of_experts_learns_to_route() -> None:
    # Two fixed experts, each right on one half of the task: y = x where x_0 > 0
    # (the identity), y = -x where x_0 < 0 (the negation). Only the router trains.
    torch.manual_seed(0)
    router = fl.TopKRouter(2, 2, k=1).double()
    with torch.no_grad():  # every sample starts on expert 0: half of them wrongly
        router.proj.weight.zero_()
        router.proj.bias.zero_()
    moe = fl.Flow(nn.Identity()).gate(router, nn.Identity(), Negate()).build()
    x = torch.randn(256, 2, dtype=torch.float64)
    x[:, 0] = x[:, 0].sign() * (x[:, 0].abs() + 0.1)  # keep the halves apart
    want = x * x[:, :1].sign()
    right = (x[:, 0] < 0).long()  # the expert each sample needs

    def accuracy() -> float:
        with torch.no_grad():
            return float((router(x).argmax(-1) == right).double().mean())

    assert accuracy() < 0.55
    optimizer = torch.optim.Adam(router.parameters(), lr=0.1)
    for _ in range(60):
        optimizer.zero_grad()
        loss = ((moe(x) - want) ** 2).mean()
        loss.backward()
        optimizer.step()
    assert accuracy() > 0.97
    with torch.no_grad():
        assert float(((moe(x) - want) ** 2).mean()) < 0.1
