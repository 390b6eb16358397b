"""Misuse of loop, gate, switch and map is a `fl.BuildError` at the call that makes it."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl


def flow() -> fl.Flow:
    return fl.Flow(nn.Identity())


def raises(match: str) -> Any:
    return pytest.raises(fl.BuildError, match=match)


def test_a_missing_terminator_is_reported_at_build_and_at_the_next_call() -> None:
    f = flow()
    f.loop(nn.Identity())
    with raises(r"\.loop\(Identity\(\)\) is not finished: \.build\(\) cannot come") as info:
        f.build()
    assert ".for_(n), .while_(cond, max_iter) or .until(cond, max_iter)" in str(info.value)
    f = flow()
    f.map(nn.Identity())
    with raises(r"\.map\(Identity\(\)\) is not finished: \.tag\(\)") as info:
        f.tag("x")
    assert ".each(), .over(tag) or .slices(n)" in str(info.value)


def test_an_open_loop_leaves_the_flow_it_started_on_unchanged() -> None:
    f = flow()
    builder = f.loop(lambda x: x + 1)
    assert f.through(nn.Identity()).build()(torch.zeros(1)).tolist() == [0.0]  # no loop in f
    g = builder.for_(2).build()
    assert g(torch.zeros(1)).tolist() == [2.0]


def test_a_construct_is_finished_once() -> None:
    builder = flow().loop(nn.Identity())
    builder.for_(2)
    with raises(r"already finished by \.for_\(2\)"):
        builder.for_(3)


@pytest.mark.parametrize("n", [0, -1, True, 2.0, "3"])
def test_for_needs_a_positive_int(n: Any) -> None:
    with raises(r"\.for_\(.*\): n must be at least 1") as info:
        flow().loop(nn.Identity()).for_(n)
    assert "use .through(body) for a single application" in str(info.value)


@pytest.mark.parametrize("method", ["while_", "until"])
def test_halting_loops_need_max_iter_of_at_least_one(method: str) -> None:
    with raises("max_iter must be at least 1"):
        getattr(flow().loop(nn.Identity()), method)(fl.ThresholdHalt(1), 0)


def test_the_condition_must_be_callable_with_the_state_alone() -> None:
    with raises(r"needs a module or a callable"):
        flow().loop(nn.Identity()).while_(3, 5)
    with raises(r"the halt condition \(.*\) accepts 2 inputs, but the graph would call it with 1"):
        flow().loop(nn.Identity()).until(lambda s, r: s, 5)


@pytest.mark.parametrize("method", ["gate", "switch"])
def test_gate_and_switch_need_two_alternatives(method: str) -> None:
    what = "experts" if method == "gate" else "branches"
    with raises(rf"\.{method}\(\) needs at least 2 {what}, got 1"):
        getattr(flow(), method)(fl.FixedSelector(0), nn.Identity())
    with raises(rf"needs at least 2 {what}, got 0"):
        getattr(flow(), method)(fl.FixedSelector(0))


@pytest.mark.parametrize(
    "make",
    [
        lambda f: f.loop(nn.Identity()),
        lambda f: f.map(nn.Identity()),
        lambda f: f.gate(fl.SoftmaxRouter(2, 2), nn.Identity(), nn.Identity()),
        lambda f: f.switch(fl.FixedSelector(0), nn.Identity(), nn.Identity()),
    ],
)
def test_constructs_need_a_single_stream(make: Any) -> None:
    with raises(r"needs a single stream, got 2 open branches"):
        make(flow().split(nn.Identity(), nn.Identity()))


def test_a_built_in_router_must_match_the_number_of_experts() -> None:
    with raises(r"the router chooses among 3 experts, but \.gate\(\) is given 2"):
        flow().gate(fl.SoftmaxRouter(4, 3), nn.Identity(), nn.Identity())
    with raises(r"the selector chooses among 2 branches, but \.switch\(\) is given 3"):
        flow().switch(fl.ArgmaxSelector(4, 2), nn.Identity(), nn.Identity(), nn.Identity())


def test_a_fixed_selector_must_name_an_existing_branch() -> None:
    with raises(r"fl.FixedSelector\(2\) selects a branch that does not exist") as info:
        flow().switch(fl.FixedSelector(2), nn.Identity(), nn.Identity())
    assert "[0, 2)" in str(info.value)


def test_experts_and_branches_take_the_stream_alone() -> None:
    with raises(r"expert 1 of \.gate\(\) .* accepts 2 inputs"):
        flow().gate(fl.SoftmaxRouter(2, 2), nn.Identity(), lambda x, y: x)
    with raises(r"branch 0 of \.switch\(\) .* accepts 2 inputs"):
        flow().switch(fl.FixedSelector(0), lambda x, y: x, nn.Identity())


def test_classes_instead_of_instances_are_rejected() -> None:
    with raises("was given a class, not a module"):
        flow().gate(fl.SoftmaxRouter, nn.Identity(), nn.Identity())
    with raises("was given a class, not a module"):
        flow().loop(nn.Linear)


def test_references_are_checked_against_the_receiver() -> None:
    with raises(r"the loop body of loop_0 \(Linear.*\) accepts 1 input, but .* with 2"):
        flow().tag("a").loop(nn.Linear(2, 2)).for_(2).using("a").build()
    with raises(r"the router of gate_0 .* is missing references \['hint'\]"):

        class Hinted(nn.Module):
            def ref_names(self) -> list[str]:
                return ["hint", "other"]

            def forward(self, x: Tensor, *refs: Tensor) -> Tensor:
                return x

        flow().tag("other").gate(Hinted(), nn.Identity(), nn.Identity()).using("other").build()


def test_an_inner_reset_with_the_wrong_signature_is_reported() -> None:
    class BadReset(nn.Module):
        def reset(self) -> None:
            pass

        def forward(self, x: Tensor) -> Tensor:
            return x

    with raises(r"the loop body of loop_0 \(BadReset\(\)\) has a reset\(\) method"):
        flow().loop(BadReset()).for_(2).build()
    with raises(r"the expert 1 of gate_0 .* has a reset\(\) method"):
        flow().gate(fl.SoftmaxRouter(2, 2), nn.Identity(), BadReset()).build()


def test_over_needs_a_tag_defined_earlier() -> None:
    with raises(r"\.over\('nope'\) refers to an unknown tag") as info:
        flow().tag("here").map(nn.Identity()).over("nope")
    assert "known tags: here" in str(info.value)
    with raises(r"\.over\('later'\) refers to a tag defined later"):
        flow().through(fl.StateAdd()).using("later").map(nn.Identity()).over("later")


def test_slices_need_a_positive_count_and_batched_is_given_once() -> None:
    with raises(r"\.slices\(0\): n must be at least 1"):
        flow().map(nn.Identity()).slices(0)
    with raises(r"\.batched\(\) is given twice"):
        flow().map(nn.Identity()).batched().batched()


def test_the_chain_renders_constructs_on_one_line() -> None:
    g = (
        flow()
        .loop(nn.Identity())
        .for_(2)
        .map(nn.Identity())
        .batched()
        .each()
        .switch(fl.FixedSelector(0), nn.Identity(), nn.Tanh())
        .build()
    )
    lines = repr(g).splitlines()
    assert "  .loop(Identity()).for_(2)" in lines
    assert "  .map(Identity()).batched().each()" in lines
