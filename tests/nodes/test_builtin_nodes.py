"""`Add`, `Mean`, `Cat`, `StateAdd`, `Reshape`: values, gradients, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import flowdl as fl
from tests.support import gradcheck_graph, rand64


@pytest.mark.parametrize(
    ("module", "reference"),
    [
        (fl.Add(), lambda a, b, c: a + b + c),
        (fl.Mean(), lambda a, b, c: (a + b + c) / 3),
        (fl.Cat(), lambda a, b, c: torch.cat([a, b, c], -1)),
        (fl.Cat(0), lambda a, b, c: torch.cat([a, b, c], 0)),
        (fl.StateAdd(), lambda a, b, c: a + b + c),
    ],
)
def test_values_and_gradients(module: nn.Module, reference: object) -> None:
    xs = (rand64(2, 3), rand64(2, 3), rand64(2, 3))
    torch.testing.assert_close(module(*xs), reference(*xs))  # type: ignore[operator]
    assert torch.autograd.gradcheck(module, xs)


def test_add_and_mean_broadcast() -> None:
    a, b = torch.ones(2, 3), torch.arange(3.0)
    torch.testing.assert_close(fl.Add()(a, b), a + b)
    torch.testing.assert_close(fl.Mean()(a, b), (a + b) / 2)


@pytest.mark.parametrize("module", [fl.Add(), fl.Mean(), fl.Cat(), fl.StateAdd()])
def test_no_inputs_is_an_error(module: nn.Module) -> None:
    with pytest.raises(ValueError, match="at least one input"):
        module()


def test_state_add_skips_none() -> None:
    x = torch.tensor([1.0, 2.0])
    torch.testing.assert_close(fl.StateAdd()(None, x, None), x)
    with pytest.raises(ValueError, match="not None, got 2 None"):
        fl.StateAdd()(None, None)


def test_cat_repr_and_bad_dim() -> None:
    assert repr(fl.Cat(1)) == "Cat(dim=1)"
    with pytest.raises(TypeError, match="needs an int dimension"):
        fl.Cat("last")  # type: ignore[arg-type]


def test_reshape_godl_round_trip() -> None:
    # goDl ReshapePrimitive: Reshape(4, 2) then (1, 8) keeps [1..8]
    x = torch.arange(1.0, 9.0).reshape(1, 8)
    g = fl.Flow(fl.Reshape(4, 2)).through(fl.Reshape(1, 8)).build()
    torch.testing.assert_close(g(x), x)
    assert g.get_submodule("Reshape_0").shape == (4, 2)


def test_reshape_keeps_the_batch_with_minus_one() -> None:
    g = fl.Flow(fl.Reshape(-1, 2, 3)).through(fl.Reshape((-1, 6))).build()
    assert g(torch.zeros(5, 6)).shape == (5, 6)
    assert repr(fl.Reshape(-1, 2, 3)) == "Reshape(-1, 2, 3)"
    gradcheck_graph(g, rand64(2, 6))


@pytest.mark.parametrize("shape", [(), (-1, -1), (2, -2), (2.0,), (True,)])
def test_reshape_rejects_bad_shapes(shape: tuple[object, ...]) -> None:
    with pytest.raises(ValueError, match="Reshape"):
        fl.Reshape(*shape)  # type: ignore[arg-type]
