"""Misuse that used to fail the wrong way (a bare AttributeError or TypeError, a failure at
the first call, a message about something else, a silently different graph) is a
`fl.BuildError` saying what, where, what was expected, what was received and the fix."""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl


def flow() -> fl.Flow:
    return fl.Flow(nn.Identity())


def raises(make: Callable[[], Any]) -> fl.BuildError:
    with pytest.raises(fl.BuildError) as info:
        make()
    error = info.value
    assert all((error.call, error.expected, error.received, error.fix))
    return error


class KeywordOnly(nn.Module):
    def forward(self, *, x: Tensor) -> Tensor:
        return x


# ----------------------------------------------------- a construct left open


@pytest.mark.parametrize("method", ["build", "through", "tag", "using"])
def test_a_loop_without_terminator_names_the_terminators(method: str) -> None:
    builder = flow().loop(nn.Identity())
    args = () if method == "build" else (nn.ReLU(),) if method == "through" else ("t",)
    error = raises(lambda: getattr(builder, method)(*args))
    assert error.problem == (
        f".loop(Identity()) is not finished: .{method}() cannot come before its terminator"
    )
    assert error.expected == (
        ".loop() followed directly by .for_(n), .while_(cond, max_iter) or .until(cond, max_iter)"
    )
    assert "builder call #3" in str(error.call)
    assert builder.for_(2).build()(torch.ones(1)).tolist() == [1.0]  # the builder still works


def test_a_map_without_terminator_names_the_terminators() -> None:
    error = raises(lambda: flow().map(nn.Identity()).batched().build())
    assert error.problem.startswith(".map(Identity()) is not finished: .build()")
    assert ".each(), .over(tag) or .slices(n)" in str(error.expected)


def test_an_open_builder_keeps_other_attributes_plain() -> None:
    builder = flow().loop(nn.Identity())
    assert not hasattr(builder, "no_such_thing")
    assert not hasattr(builder, "_no_such_private")
    assert hasattr(builder, "for_")


@pytest.mark.parametrize("method", ["through", "loop", "map", "split"])
def test_an_unfinished_chain_given_as_a_module_is_refused_at_the_call(method: str) -> None:
    inner = fl.Flow(nn.ReLU()).loop(nn.Tanh())
    args = (inner, nn.Identity()) if method == "split" else (inner,)
    error = raises(lambda: getattr(flow(), method)(*args))
    assert error.problem == f".{method}() was given a chain whose .loop(Tanh()) is not finished"
    assert error.received == "<unfinished fl.Flow(ReLU()).loop(Tanh())>"
    assert error.fix == "finish it first, e.g. .loop().for_(n)"


# ------------------------------------------------------ calling an unbuilt flow


def test_calling_an_unbuilt_flow_says_to_build_it() -> None:
    error = raises(lambda: flow().through(nn.ReLU())(torch.zeros(2, 3)))
    assert error.problem == "an unbuilt fl.Flow cannot be called: call .build() first"
    assert error.received == "fl.Flow(Identity()).through(ReLU())(Tensor[2, 3] float32)"
    assert "g = flow.build()" in str(error.fix)


def test_calling_an_open_loop_says_to_finish_and_build_it() -> None:
    error = raises(lambda: flow().loop(nn.ReLU())(torch.zeros(2)))
    assert error.problem.startswith(".loop(ReLU()) is not finished, and an unbuilt fl.Flow")
    assert "flow.loop().for_(n).build()" in str(error.fix)


# ------------------------------------------------------- keyword-only forward


def test_a_keyword_only_forward_is_refused_at_build() -> None:
    error = raises(lambda: flow().through(KeywordOnly()).build())
    assert error.problem.startswith("KeywordOnly_0 (KeywordOnly()) requires a keyword-only")
    assert error.received == "forward(*, x: 'Tensor') -> 'Tensor'"
    assert ".through(KeywordOnly()) (builder call #2)" in str(error.call)


def test_a_keyword_only_callable_is_refused_where_it_is_checked() -> None:
    error = raises(lambda: flow().loop(lambda *, s: s).for_(2).build())
    assert "the loop body of loop_0" in error.problem
    assert error.received == "<lambda>(*, s)"
    error = raises(lambda: flow().gate(fl.SoftmaxRouter(1, 2), nn.Identity(), KeywordOnly()))
    assert error.problem.startswith("expert 1 of .gate() (KeywordOnly()) requires a keyword")


def test_a_keyword_only_argument_with_a_default_is_fine() -> None:
    g = flow().through(lambda x, *, scale=2.0: scale * x).build()
    assert g(torch.ones(1)).tolist() == [2.0]


# --------------------------------------------------------- a tag listed twice


def test_a_tag_listed_twice_in_using_says_so() -> None:
    error = raises(lambda: flow().tag("kv").through(fl.Add()).using("kv", "kv"))
    assert error.problem == "the tag 'kv' is listed twice in .using('kv', 'kv')"
    assert error.fix == "list it once: .using('kv')"
    assert "already wired" not in str(error)


# --------------------------------------- code written for a builder that mutates


def test_a_dropped_result_is_refused_rather_than_built_without() -> None:
    f = flow()
    f.through(nn.ReLU())  # the result is dropped: f is unchanged
    error = raises(f.build)
    assert error.problem.startswith("the result of .through(ReLU()) was dropped unused")
    assert "flow = flow.through(ReLU())" in str(error.fix)
    assert f.build()(torch.tensor([-1.0])).tolist() == [-1.0]  # said once, then f goes on


def test_a_dropped_unfinished_loop_is_reported_as_unfinished() -> None:
    f = flow()
    f.map(nn.Identity())
    error = raises(lambda: f.tag("x"))
    assert (
        error.problem
        == ".map(Identity()) is not finished: .tag() cannot come before its terminator"
    )
    assert "dropped" in str(error.received)


def test_a_dropped_terminator_or_batched_is_reported() -> None:
    builder = flow().loop(nn.Identity())
    builder.for_(2)
    assert "already finished by .for_(2)" in raises(lambda: builder.for_(3)).problem
    mapping = flow().map(nn.Identity())
    mapping.batched()
    assert "the result of .batched() was dropped" in raises(mapping.each).problem


def test_results_kept_are_never_refused() -> None:
    trunk = flow().through(nn.ReLU())
    kept = [trunk.through(nn.Tanh()), trunk.loop(nn.Identity()), trunk.map(nn.Identity())]
    assert trunk.through(nn.Sigmoid()).build() is not None
    assert trunk.build()(torch.tensor([-1.0])).tolist() == [0.0]
    assert kept[0].build()(torch.tensor([-1.0])).tolist() == [0.0]


def test_a_graph_naming_a_flow_still_copies_and_pickles() -> None:
    inner = fl.Flow(nn.Linear(2, 2)).through(nn.ReLU())
    g = flow().through(inner).build()
    later = inner.through(nn.Tanh())  # inner now tracks a derived flow (a weak reference)
    for twin in (copy.deepcopy(g), pickle.loads(pickle.dumps(g))):
        assert repr(twin) == repr(g)
    assert later.build() is not None
