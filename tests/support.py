"""Shared test helpers: oracle comparison, gradcheck, and small modules with known math."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call


def grads(out: Tensor, wrt: Sequence[Tensor], cotangent: Tensor) -> list[Tensor | None]:
    """Vector-Jacobian product of `out` with `cotangent` for every tensor of `wrt`."""
    return list(torch.autograd.grad(out, list(wrt), cotangent, allow_unused=True))


def assert_same_as_oracle(
    graph: nn.Module,
    oracle: Callable[..., Tensor],
    *inputs: Tensor,
    params: Sequence[Tensor] | None = None,
    none_is_zero: bool = False,
) -> None:
    """`graph` and the hand-written `oracle` agree on outputs and on every gradient.

    Inputs should be float64 and require grad; the two share their submodules, so
    parameter gradients are compared on the same tensors. With `none_is_zero`, a
    missing gradient on one side may match an all-zero gradient on the other (a
    sparse gate skips what a dense oracle multiplies by zero; a halted sample's
    frozen row sends zeros to modules the sample alone would not have run).
    """
    params = list(graph.parameters()) if params is None else list(params)
    out_graph = graph(*inputs)
    out_oracle = oracle(*inputs)
    torch.testing.assert_close(out_graph, out_oracle, rtol=0, atol=1e-12)
    cotangent = torch.randn_like(out_oracle)
    wrt = [x for x in inputs if x.requires_grad] + params
    got = grads(out_graph, wrt, cotangent)
    want = grads(out_oracle, wrt, cotangent)
    assert len(got) == len(want) > 0
    for k, (g, w) in enumerate(zip(got, want, strict=True)):
        if none_is_zero and (g is None) != (w is None):
            present = g if w is None else w
            assert present is not None
            assert not present.any(), f"gradient {k}: missing on one side, non-zero on the other"
        elif w is None:
            assert g is None, f"gradient {k}: the oracle has none, the graph has one"
        else:
            assert g is not None, f"gradient {k}: the graph has none, the oracle has one"
            torch.testing.assert_close(g, w, rtol=0, atol=1e-12)


def gradcheck_graph(
    graph: nn.Module, *inputs: Tensor, before: Callable[[], None] | None = None
) -> None:
    """`torch.autograd.gradcheck` on a graph: w.r.t. its inputs, then w.r.t. its parameters.

    `before` runs before every evaluation (to restore state, say).
    """

    def run(*xs: Tensor) -> Any:
        if before is not None:
            before()
        return graph(*xs)

    assert torch.autograd.gradcheck(run, inputs, eps=1e-6, atol=1e-5)
    names = [name for name, _ in graph.named_parameters()]
    if not names:
        return
    fixed = tuple(x.detach() for x in inputs)

    def run_params(*ps: Tensor) -> Any:
        if before is not None:
            before()
        return functional_call(graph, dict(zip(names, ps, strict=True)), fixed)

    params = tuple(p.detach().clone().requires_grad_() for _, p in graph.named_parameters())
    assert torch.autograd.gradcheck(run_params, params, eps=1e-6, atol=1e-5)


def rand64(*shape: int, grad: bool = True) -> Tensor:
    """A float64 random tensor that requires grad."""
    return torch.randn(*shape, dtype=torch.float64, requires_grad=grad)


def linear64(n_in: int, n_out: int) -> nn.Linear:
    return nn.Linear(n_in, n_out).double()


def fixed_linear(weight: list[list[float]], bias: list[float] | None = None) -> nn.Linear:
    """A float32 Linear with hand-set weights (goDl's test convention); bias zero by default."""
    w = torch.tensor(weight)
    layer = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        layer.weight.copy_(w)
        layer.bias.copy_(torch.tensor(bias) if bias is not None else torch.zeros(w.shape[0]))
    return layer


IDENTITY = [[1.0, 0.0], [0.0, 1.0]]
DOUBLE = [[2.0, 0.0], [0.0, 2.0]]


class Mix(nn.Module):
    """``linear(x) + tanh(linear_r(r))`` summed over references: takes any number of refs."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.main = nn.Linear(dim, dim)
        self.ref = nn.Linear(dim, dim)

    def forward(self, x: Tensor, *refs: Tensor) -> Tensor:
        out = self.main(x)
        for r in refs:
            out = out + torch.tanh(self.ref(r))
        return out


class Counting(nn.Module):
    """Identity that counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def forward(self, x: Tensor, *refs: Tensor) -> Tensor:
        self.calls += 1
        return x


def assert_levels_are_independent(graph: object) -> None:
    """No node of a level writes a slot that another node of the same level reads or writes.

    This is what lets the nodes of one level run concurrently.
    """
    plan = graph._plan  # type: ignore[attr-defined]
    for level in plan.levels:
        for i in level:
            out = plan.steps[i][4]
            for j in level:
                if j != i:
                    assert out != plan.steps[j][4], f"steps {i} and {j} write slot {out}"
                    assert out not in plan.step_slots[j], f"step {i} overwrites what {j} reads"
