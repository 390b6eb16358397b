"""Errors during forward: `fl.GraphError` names the node, its call and what it received."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl


def test_node_error_names_node_call_and_shapes() -> None:
    g = fl.Flow(nn.Linear(2, 3)).tag("hidden").through(nn.Linear(2, 2)).build()
    with pytest.raises(fl.GraphError) as info:
        g(torch.randn(4, 2))
    error = info.value
    assert isinstance(error, RuntimeError)
    assert error.node_id == "Linear_1"
    assert error.problem.startswith(
        "Linear_1 raised RuntimeError: mat1 and mat2 shapes cannot be multiplied"
    )
    assert (
        error.call == ".through(Linear(in_features=2, out_features=2, bias=True)) (builder call #3)"
    )
    assert error.inputs == ("stream: Tensor[4, 3] float32",)
    assert isinstance(error.__cause__, RuntimeError)


def test_tags_and_reference_ports_are_described() -> None:
    def bad(x: Tensor, skip: Tensor) -> Tensor:
        raise ValueError("boom\nsecond line")

    g = fl.Flow(nn.Identity()).tag("skip").through(bad).using("skip").tag("out").build()
    with pytest.raises(fl.GraphError) as info:
        g(torch.zeros(2, 5, dtype=torch.float64))
    error = info.value
    assert error.problem == "bad_0 raised ValueError: boom"
    assert error.tags == ("out",)
    assert error.inputs == ("stream: Tensor[2, 5] float64", "ref 'skip': Tensor[2, 5] float64")
    assert "node:     bad_0 (tags: out)" in str(error)


def test_merge_ports_are_branches() -> None:
    g = fl.Flow(nn.Identity()).split(lambda x: x[:, :2], lambda x: x).merge(fl.Add()).build()
    with pytest.raises(fl.GraphError) as info:
        g(torch.zeros(1, 3))
    assert info.value.inputs == ("branch 0: Tensor[1, 2] float32", "branch 1: Tensor[1, 3] float32")


def test_errors_in_nested_graphs_name_both_nodes() -> None:
    inner = fl.Flow(nn.Linear(3, 3)).label("inner").build()
    outer = fl.Flow(nn.Identity()).through(inner).build()
    with pytest.raises(fl.GraphError) as info:
        outer(torch.zeros(1, 2))
    assert info.value.node_id == "inner"  # a labelled graph's node is known by its label
    assert "inner raised GraphError: Linear_0 raised RuntimeError" in info.value.problem
    assert isinstance(info.value.__cause__, fl.GraphError)
    assert info.value.__cause__.node_id == "Linear_0"


def test_tags_reached_before_a_failure_are_kept() -> None:
    def fail(x: Tensor) -> Tensor:
        raise ValueError("no")

    g = fl.Flow(nn.Identity()).tag("before").through(fail).tag("after").build()
    with pytest.raises(fl.GraphError):
        g(torch.ones(1))
    torch.testing.assert_close(g.tagged("before"), torch.ones(1))
    assert g.tagged("after") is None


def test_non_tensor_values_are_described() -> None:
    def fail(x: object) -> object:
        raise TypeError("nope")

    g = fl.Flow(lambda x: (x, None)).through(fail).build()
    with pytest.raises(fl.GraphError) as info:
        g(torch.ones(2))
    assert info.value.inputs == ("stream: tuple(Tensor[2] float32, None)",)


def test_keyboard_interrupt_is_not_wrapped() -> None:
    def interrupt(x: Tensor) -> Tensor:
        raise KeyboardInterrupt

    g = fl.Flow(interrupt).build()
    with pytest.raises(KeyboardInterrupt):
        g(torch.ones(1))
