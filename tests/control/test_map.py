"""`Flow.map`: each, over, slices and batched against hand-written row loops."""

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


def test_each_doubles_every_row() -> None:
    g = fl.Flow(nn.Identity()).map(fixed_linear(DOUBLE)).each().build()
    out = g(torch.tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]))
    assert out.tolist() == [[2, 4], [6, 8], [10, 12]]


def test_over_maps_a_tagged_value_and_leaves_the_stream() -> None:
    g = (
        fl.Flow(nn.Identity())
        .tag("source")
        .through(lambda x: x * 100)
        .map(fixed_linear(DOUBLE))
        .over("source")
        .build()
    )
    assert g(torch.tensor([[1.0, 2.0], [3.0, 4.0]])).tolist() == [[2, 4], [6, 8]]


def test_each_backward_sums_the_bias_gradient_over_rows() -> None:
    body = fixed_linear(IDENTITY)
    g = fl.Flow(nn.Identity()).map(body).each().build()
    g(torch.ones(3, 2)).sum().backward()
    assert body.bias.grad is not None
    assert body.bias.grad.tolist() == [3.0, 3.0]


def test_a_nested_graph_body_keeps_the_shape() -> None:
    inner = fl.Flow(nn.Linear(4, 4)).through(nn.ReLU()).build()
    g = fl.Flow(nn.Identity()).map(inner).each().build()
    assert g(torch.randn(5, 4)).shape == (5, 4)


def test_slices_keep_the_shape_and_the_values_of_an_identity_body() -> None:
    g = fl.Flow(nn.Identity()).map(nn.Linear(2, 2)).slices(4).build()
    assert g(torch.randn(1, 8)).shape == (1, 8)
    x = torch.arange(12.0).reshape(3, 4)
    g = fl.Flow(nn.Identity()).map(fixed_linear(IDENTITY)).slices(2).build()
    assert torch.equal(g(x), x)


def test_slices_backward_counts_the_slices() -> None:
    body = fixed_linear(IDENTITY)
    g = fl.Flow(nn.Identity()).map(body).slices(2).build()
    g(torch.ones(1, 4)).sum().backward()
    assert body.bias.grad is not None
    assert body.bias.grad.tolist() == [2.0, 2.0]


@pytest.mark.parametrize("terminator", ["each", "slices"])
def test_batched_equals_row_by_row_for_row_independent_bodies(terminator: str) -> None:
    body = nn.Sequential(linear64(2, 3), nn.Tanh())
    args = (2,) if terminator == "slices" else ()
    rows = getattr(fl.Flow(nn.Identity()).map(body), terminator)(*args).build()
    whole = getattr(fl.Flow(nn.Identity()).map(body).batched(), terminator)(*args).build()
    x = rand64(3, 4 if terminator == "slices" else 2)
    torch.testing.assert_close(whole(x), rows(x))


def test_batched_backward_counts_the_rows() -> None:
    body = fixed_linear(IDENTITY)
    g = fl.Flow(nn.Identity()).map(body).batched().each().build()
    g(torch.ones(2, 2)).sum().backward()
    assert body.bias.grad is not None
    assert body.bias.grad.tolist() == [2.0, 2.0]


# ------------------------------------------------------ oracle and gradcheck


def test_each_with_a_reference_equals_the_row_loop() -> None:
    body = linear64(3, 3)
    g = (
        fl.Flow(linear64(3, 3))
        .tag("context")
        .map(lambda row, c: torch.tanh(body(row)) * c.mean(0))
        .each()
        .using("context")
        .build()
    )
    entry = g.Linear_0

    def oracle(x: Tensor) -> Tensor:
        c = entry(x)
        return torch.cat([torch.tanh(body(c[i : i + 1])) * c.mean(0) for i in range(len(c))])

    assert_same_as_oracle(g, oracle, rand64(4, 3), params=[*entry.parameters(), *body.parameters()])


def test_slices_equal_the_reshaped_row_loop_and_gradcheck() -> None:
    body = linear64(2, 3)
    g = fl.Flow(nn.Identity()).map(body).slices(3).build()

    def oracle(x: Tensor) -> Tensor:
        pieces = x.reshape(-1, 2)
        out = torch.cat([body(pieces[i : i + 1]) for i in range(len(pieces))])
        return out.reshape(x.shape[0], 9)

    assert_same_as_oracle(g, oracle, rand64(4, 6))
    gradcheck_graph(g, rand64(2, 6))


def test_slices_of_a_sequence_keep_the_leading_dimensions() -> None:
    g = fl.Flow(nn.Identity()).map(lambda p: p.flip(-1)).slices(2).build()
    x = torch.arange(24.0).reshape(2, 3, 4)
    want = x.reshape(2, 3, 2, 2).flip(-1).reshape(2, 3, 4)
    assert torch.equal(g(x), want)


def test_the_context_is_checked_before_every_row() -> None:
    ctx = fl.Context()
    seen: list[int] = []

    def body(row: Tensor) -> Tensor:
        seen.append(1)
        if len(seen) == 2:
            ctx.cancel()
        return row

    g = fl.Flow(nn.Identity()).map(body).each().build()
    with pytest.raises(fl.Cancelled):
        g(torch.ones(10, 1), ctx=ctx)
    assert len(seen) == 2


# ------------------------------------------------------------- runtime errors


def test_zero_rows_are_a_clear_error() -> None:
    g = fl.Flow(nn.Identity()).map(nn.Identity()).each().build()
    with pytest.raises(fl.GraphError, match="map has no rows"):
        g(torch.ones(0, 3))


def test_a_last_dimension_not_divisible_by_n_is_a_clear_error() -> None:
    g = fl.Flow(nn.Identity()).map(nn.Identity()).slices(3).build()
    with pytest.raises(fl.GraphError, match=r"last dimension \(4\) is not divisible by 3"):
        g(torch.ones(2, 4))
    with pytest.raises(fl.GraphError, match="at least 2 dimensions"):
        g(torch.ones(6))


def test_a_failing_row_is_named() -> None:
    def body(row: Tensor) -> Tensor:
        if row.sum() > 2:
            raise ValueError("row too big")
        return row

    g = fl.Flow(nn.Identity()).map(body).each().build()
    with pytest.raises(fl.GraphError, match=r"on row 3 \(0-based\) of 4"):
        g(torch.arange(4.0).reshape(4, 1))


def test_a_failure_deep_inside_nested_constructs_names_its_root_cause() -> None:
    def fail(x: Tensor) -> Tensor:
        raise ValueError("the real problem")

    inner = fl.Flow(nn.Identity()).loop(fail).for_(2)
    g = fl.Flow(nn.Identity()).map(inner).each().build()
    with pytest.raises(fl.GraphError) as info:
        g(torch.ones(2, 3))
    text = str(info.value)
    assert text.startswith("map_0: the map body")
    assert "root cause: ValueError: the real problem" in text
