"""Every build-time mistake raises `fl.BuildError` saying what, expected, received, fix, where."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl


def _split() -> fl.Flow:
    return fl.Flow(nn.Identity()).split(nn.ReLU(), nn.Tanh(), nn.Sigmoid())


def _raises(make: Any) -> fl.BuildError:
    with pytest.raises(fl.BuildError) as info:
        make()
    error = info.value
    assert isinstance(error, ValueError)
    return error


@pytest.mark.parametrize("method", ["through", "also", "fork"])
def test_stream_constructs_on_open_branches(method: str) -> None:
    error = _raises(lambda: getattr(_split(), method)(nn.ReLU()))
    assert error.problem == (
        f".{method}() needs a single stream, got 3 open branches from .split(); "
        "call .merge(...) first"
    )
    assert "builder call #3" in str(error)
    assert ".split(ReLU(), Tanh(), Sigmoid()) (builder call #2)" in str(error.received)
    assert ".merge(fl.Add())" in str(error.fix)


def test_split_on_open_branches() -> None:
    error = _raises(lambda: _split().split(nn.ReLU(), nn.ReLU()))
    assert ".split() needs a single stream, got 3 open branches" in error.problem


def test_split_with_fewer_than_two_branches() -> None:
    error = _raises(lambda: fl.Flow(nn.Identity()).split(nn.ReLU()))
    assert error.problem == ".split() needs at least 2 branches, got 1"
    assert ".through(module)" in str(error.fix)


def test_empty_split() -> None:
    error = _raises(lambda: fl.Flow(nn.Identity()).split())
    assert "empty .split()" in error.problem
    assert error.received == "0 modules"


def test_merge_on_single_stream() -> None:
    error = _raises(lambda: fl.Flow(nn.Identity()).merge(fl.Add()))
    assert "needs several branches to combine, got a single stream" in error.problem
    assert ".split(a, b, ...)" in str(error.fix)


def test_tag_on_open_branches_points_to_tag_group() -> None:
    error = _raises(lambda: _split().tag("h"))
    assert ".tag() needs a single stream, got 3 open branches" in error.problem
    assert ".tag_group('h')" in str(error.fix)


def test_duplicate_tag() -> None:
    error = _raises(lambda: fl.Flow(nn.Identity()).tag("x").through(nn.ReLU()).tag("x"))
    assert error.problem == "duplicate tag name 'x'"
    assert "Identity_0" in str(error.received)


def test_tag_group_on_single_stream() -> None:
    error = _raises(lambda: fl.Flow(nn.Identity()).tag_group("h"))
    assert ".tag_group('h') needs several branches" in error.problem
    assert ".tag('h')" in str(error.fix)


def test_duplicate_tag_group() -> None:
    error = _raises(
        lambda: _split().tag_group("h").merge(fl.Add()).split(nn.ReLU(), nn.ReLU()).tag_group("h")
    )
    assert error.problem == "duplicate tag group name 'h'"


def test_tag_group_conflicts_with_tag() -> None:
    error = _raises(
        lambda: fl.Flow(nn.Identity()).tag("h").split(nn.ReLU(), nn.ReLU()).tag_group("h")
    )
    assert "conflicts with the existing tag 'h'" in error.problem


def test_tag_group_suffix_conflicts_with_tag() -> None:
    error = _raises(
        lambda: fl.Flow(nn.Identity()).tag("h_1").split(nn.ReLU(), nn.ReLU()).tag_group("h")
    )
    assert error.problem == "duplicate tag name 'h_1'"
    assert "suffixed name 'h_1' of .tag_group('h')" in str(error.received)


def test_tag_conflicts_with_group() -> None:
    error = _raises(lambda: _split().tag_group("h").merge(fl.Add()).tag("h"))
    assert "conflicts with the tag group 'h'" in error.problem


def test_input_conflicts_with_tag() -> None:
    error = _raises(lambda: fl.Flow(nn.Identity()).tag("x").input("x"))
    assert error.problem == "duplicate tag name 'x'"


def test_duplicate_input_names() -> None:
    error = _raises(lambda: fl.Flow(nn.Identity()).input("a", "a"))
    assert error.problem == "duplicate input name 'a'"


def test_input_without_names() -> None:
    error = _raises(lambda: fl.Flow(nn.Identity()).input())
    assert error.problem == ".input() needs at least one name"


def test_open_branches_at_build() -> None:
    error = _raises(lambda: _split().build())
    assert (
        error.problem == "cannot build with 3 open branches from .split(); call .merge(...) first"
    )
    assert ".build() (builder call #3)" in str(error)


def test_unknown_tag_lists_the_known_ones_and_suggests() -> None:
    flow = fl.Flow(nn.Identity()).tag("hidden").through(fl.Add()).using("hiden")
    error = _raises(flow.build)
    assert error.problem == ".using('hiden') refers to a tag that is never defined"
    assert "known tags: hidden" in str(error.expected)
    assert "Did you mean 'hidden'?" in str(error.fix)
    assert ".using('hiden') (builder call #4)" in str(error)


def test_several_unknown_tags_are_all_named() -> None:
    error = _raises(fl.Flow(fl.Add()).using("c", "a", "b").build)
    assert error.problem == ".using('c') refers to a tag that is never defined (so do ['a', 'b'])"


def test_a_tag_group_is_not_a_reference() -> None:
    flow = fl.Flow(nn.Identity()).split(nn.ReLU(), nn.Tanh()).tag_group("h").merge(fl.Add())
    error = _raises(lambda: flow.through(fl.Add()).using("h"))
    assert error.problem == "'h' is a tag group, not a tag: .using() reads single tags"
    assert error.fix == ".using('h_0', 'h_1') to read every branch"


def test_two_different_graphs_with_one_label() -> None:
    a = fl.Flow(nn.Identity()).label("encoder").build()
    b = fl.Flow(nn.Identity()).label("encoder").build()
    error = _raises(lambda: fl.Flow(a).through(b))
    assert error.problem == "two different graphs are labelled 'encoder' in this graph"


def test_a_label_that_is_already_a_node_id() -> None:
    odd = fl.Flow(nn.Identity()).label("Identity_0").build()
    error = _raises(lambda: fl.Flow(nn.Identity()).through(odd))
    assert error.problem == "the label 'Identity_0' is already the id of node Identity_0"


def test_same_reference_twice_on_one_node() -> None:
    error = _raises(lambda: fl.Flow(nn.Identity()).tag("x").through(fl.Add()).using("x").using("x"))
    assert "is given the reference 'x' twice" in error.problem


def test_reference_to_own_output_is_a_cycle() -> None:
    error = _raises(lambda: fl.Flow(nn.Identity()).through(fl.Add()).tag("h").using("h"))
    assert "cannot read 'h' in the same call" in error.problem
    assert "call .using('h') before .tag('h')" in str(error.fix)


def test_reference_to_the_sum_of_also_is_a_cycle() -> None:
    error = _raises(lambda: fl.Flow(nn.Identity()).also(fl.Add()).tag("s").using("s"))
    assert "add_0, which is computed from Add_0's own output" in error.problem


def test_unnamed_fork() -> None:
    error = _raises(lambda: fl.Flow(nn.Identity()).fork(nn.ReLU()).through(nn.Tanh()))
    assert error.problem == "the side output of .fork(ReLU()) is never named"
    assert "insert .tag('side') before .through(Tanh())" in str(error.fix)
    error = _raises(fl.Flow(nn.Identity()).fork(nn.ReLU()).build)
    assert "never named" in error.problem


def test_class_instead_of_instance() -> None:
    error = _raises(lambda: fl.Flow(nn.Identity()).through(nn.ReLU))
    assert error.problem == ".through() was given a class, not a module"
    assert error.received == "the class torch.nn.modules.activation.ReLU"
    assert error.fix == "create an instance: ReLU(...)"


def test_not_callable() -> None:
    error = _raises(lambda: fl.Flow(3))  # type: ignore[arg-type]
    assert error.problem == "fl.Flow() needs a module or a callable"
    assert error.received == "int 3"


@pytest.mark.parametrize("name", ["", "a.b", "has space", 3])
def test_invalid_names(name: Any) -> None:
    _raises(lambda: fl.Flow(nn.Identity()).tag(name))
    _raises(lambda: fl.Flow(nn.Identity()).input(name))
    _raises(lambda: fl.Flow(nn.Identity()).label(name))
    _raises(lambda: fl.Flow(nn.Identity()).using(name))


def test_label_twice() -> None:
    error = _raises(lambda: fl.Flow(nn.Identity()).label("a").label("b"))
    assert error.problem == "this graph is already labelled 'a'"


def test_init_without_forward_reference() -> None:
    error = _raises(lambda: fl.Flow(nn.Identity()).tag("h", init=(3,)))
    assert "no earlier .using('h') reads 'h' as state" in error.problem


def test_init_of_the_wrong_type() -> None:
    error = _raises(lambda: fl.Flow(fl.Add()).using("h").tag("h", init="zeros"))  # type: ignore[arg-type]
    assert "needs a per-sample shape or a callable" in error.problem


class TestModuleContracts:
    def test_module_fed_more_inputs_than_forward_takes(self) -> None:
        flow = fl.Flow(nn.Identity()).tag("h").through(nn.Linear(2, 2)).using("h")
        error = _raises(flow.build)
        assert error.problem == (
            "Linear_0 (Linear(in_features=2, out_features=2, bias=True)) accepts 1 input, "
            "but the graph would call it with 2: the stream and the reference 'h'"
        )
        assert "references from .using('h') (builder call #4)" in str(error.call)

    def test_merge_fed_more_branches_than_it_takes(self) -> None:
        error = _raises(_split().merge(lambda a, b: a + b).build)
        assert (
            "accepts 2 inputs, but the graph would call it with 3: 3 branch outputs"
            in error.problem
        )

    def test_nested_graph_fed_the_wrong_number_of_inputs(self) -> None:
        inner = fl.Flow(nn.Identity()).input("ctx").through(fl.Add()).using("ctx").build()
        error = _raises(fl.Flow(nn.Identity()).through(inner).build)
        assert "accepts 2 inputs, but the graph would call it with 1" in error.problem

    class NeedsContext(nn.Module):
        def ref_names(self) -> list[str]:
            return ["context"]

        def forward_named(self, x: Tensor, refs: dict[str, Tensor]) -> Tensor:
            return x + refs["context"]

    def test_ref_names_without_using(self) -> None:
        error = _raises(fl.Flow(self.NeedsContext()).build)
        assert "declares ref_names() ['context'] but no .using() feeds it" in error.problem
        assert ".using('context')" in str(error.fix)

    def test_ref_names_missing_reference(self) -> None:
        flow = fl.Flow(nn.Identity()).tag("features").through(self.NeedsContext()).using("features")
        error = _raises(flow.build)
        assert "['context']" in error.problem
        assert "ref_names()" in error.problem
        assert ".using('context')" in str(error.fix)

    def test_ref_names_extra_reference(self) -> None:
        flow = (
            fl.Flow(nn.Identity())
            .tag("context")
            .tag("extra")
            .through(self.NeedsContext())
            .using("context", "extra")
        )
        error = _raises(flow.build)
        assert error.problem.endswith(
            "is fed extra references ['extra'] that its ref_names() does not declare"
        )
        assert "check ['extra'] for typos" in str(error.fix)

    def test_ref_names_correct_wiring_builds_and_runs(self) -> None:
        g = (
            fl.Flow(nn.Identity())
            .tag("context")
            .through(self.NeedsContext())
            .using("context")
            .build()
        )
        assert g(torch.tensor(2.0)).item() == 4.0

    def test_positional_references_must_follow_ref_names_order(self) -> None:
        class Ordered(nn.Module):
            def ref_names(self) -> list[str]:
                return ["a", "b"]

            def forward(self, x: Tensor, a: Tensor, b: Tensor) -> Tensor:
                return x + a - b

        flow = fl.Flow(nn.Identity()).tag("a").tag("b").through(Ordered()).using("b", "a")
        error = _raises(flow.build)
        assert "differs from its ref_names() order" in error.problem
        assert ".using('a', 'b')" in str(error.fix)

    def test_reset_with_the_wrong_signature(self) -> None:
        class Resets(nn.Module):
            def reset(self) -> None:
                pass

            def forward(self, x: Tensor) -> Tensor:
                return x

        error = _raises(fl.Flow(Resets()).build)
        assert "has a reset() method that does not accept (batch_size, device)" in error.problem

    def test_initial_state_with_the_wrong_signature(self) -> None:
        class Init(nn.Module):
            def initial_state(self) -> Tensor:
                return torch.zeros(1)

            def forward(self, x: Tensor, h: Tensor) -> Tensor:
                return x + h

        error = _raises(fl.Flow(Init()).using("h").tag("h").build)
        assert "initial_state() method that does not accept (ref_name, stream)" in error.problem


def test_error_message_layout() -> None:
    error = _raises(lambda: _split().through(nn.ReLU()))
    lines = str(error).splitlines()
    assert lines[0] == error.problem
    assert [line.split(":")[0].strip() for line in lines[1:]] == [
        "at",
        "expected",
        "received",
        "fix",
    ]


def test_a_failed_call_leaves_the_flow_unchanged() -> None:
    flow = fl.Flow(nn.Identity()).tag("x")
    with pytest.raises(fl.BuildError):
        flow.tag("x")
    g = flow.through(lambda x: x + 1).build()
    assert g(torch.tensor(1.0)).item() == 2.0
