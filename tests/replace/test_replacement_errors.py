"""A replacement that cannot work is refused with a clear error, and changes nothing."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl

D = 4


@contextmanager
def unchanged(graph: fl.Graph) -> Iterator[None]:
    """The body raises, and `graph` runs, renders and holds exactly what it did."""
    x = torch.randn(3, D)
    graph.eval()

    def look() -> tuple[Any, ...]:
        modules = dict(graph.named_modules())
        nodes = [node.module for node in graph._record.nodes]
        return graph(x), repr(graph), modules, nodes

    before = look()
    yield
    after = look()
    torch.testing.assert_close(after[0], before[0], rtol=0, atol=0)
    assert after[1] == before[1]
    assert after[2].keys() == before[2].keys()
    assert all(after[2][k] is before[2][k] for k in before[2])
    assert all(a is b for a, b in zip(after[3], before[3], strict=True))


# ------------------------------------------------------- not a module at all


@pytest.mark.parametrize(
    "write",
    [
        lambda g: setattr(g, "Linear_0", torch.relu),
        lambda g: g.add_module("Linear_0", torch.relu),  # type: ignore[arg-type]
        lambda g: setattr(g, "Linear_0", None),
        lambda g: g._modules.__setitem__("Linear_0", None),
        lambda g: delattr(g, "Linear_0"),
        lambda g: setattr(g, "Linear_0", fl.Flow(nn.Linear(D, D))),
    ],
    ids=["function", "add_module_function", "none", "dict_none", "del", "unbuilt_flow"],
)
def test_a_node_module_replaced_by_what_is_not_a_module(write: Callable[[Any], None]) -> None:
    g = fl.Flow(nn.Linear(D, D)).through(nn.Tanh()).build()
    with unchanged(g), pytest.raises(TypeError) as raised:
        write(g)
    message = str(raised.value)
    assert message.startswith("'Linear_0' of Graph(3 nodes) holds Linear(in_features=4")
    assert "replaced only by another nn.Module" in message
    assert re.search(r"expected: .*nn\.Module", message)
    assert "fix:" in message
    assert ".build()" in message


@pytest.mark.parametrize("where", ["loop body", "expert", "container", "while halt"])
def test_a_construct_part_replaced_by_what_is_not_a_module(where: str) -> None:
    g = (
        fl.Flow(nn.Linear(D, D))
        .loop(nn.Linear(D, D))
        .while_(fl.ThresholdHalt(10.0), 2)
        .gate(fl.SoftmaxRouter(D, 2), nn.Linear(D, D), nn.Tanh())
        .build()
    )
    writes: dict[str, tuple[Callable[[], None], str]] = {
        "loop body": (lambda: setattr(g.loop_0, "body", None), "the loop body ('body') of loop_0"),
        "expert": (lambda: g.gate_0.experts.add_module("0", None), "expert 0 of gate_0"),
        "container": (
            lambda: setattr(g.gate_0, "experts", nn.ModuleList([nn.Tanh()])),
            "the experts of gate_0",
        ),
        "while halt": (lambda: setattr(g.loop_0, "cond", None), "the halt condition ('cond')"),
    }
    write, named = writes[where]
    with unchanged(g), pytest.raises(TypeError) as raised:
        write()
    assert named in str(raised.value)
    assert "fix:" in str(raised.value)


# ------------------------------------------------- a module that cannot work


class TakesTwo(nn.Module):
    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        return x + y


class DeclaresRefs(nn.Module):
    def ref_names(self) -> list[str]:
        return ["memory"]

    def forward(self, x: Tensor, memory: Tensor) -> Tensor:
        return x + memory


class BadReset(nn.Module):
    def reset(self) -> None:
        pass

    def forward(self, x: Tensor) -> Tensor:
        return x


def test_a_module_taking_other_inputs_is_refused() -> None:
    g = fl.Flow(nn.Linear(D, D)).tag("a").through(nn.Linear(D, D)).build()
    with unchanged(g), pytest.raises(fl.BuildError) as raised:
        g.Linear_1 = TakesTwo()
    error = raised.value
    assert error.problem.startswith(
        "cannot replace 'Linear_1' of Graph(3 nodes) (Linear(in_features=4, out_features=4, "
        "bias=True)) with TakesTwo(): Linear_1 (TakesTwo()) accepts 2 inputs, but the graph "
        "would call it with 1: the stream"
    )
    assert error.expected == "2 inputs"
    assert error.call is not None
    assert ".through(Linear(" in error.call
    assert error.fix is not None
    assert error.fix.endswith("the graph was left as it was, running the module it had")


def test_a_module_declaring_other_references_is_refused() -> None:
    g = fl.Flow(nn.Linear(D, D)).tag("a").through(TakesTwo()).using("a").build()
    with (
        unchanged(g),
        pytest.raises(
            fl.BuildError,
            match=r"is fed references \['a'\] but its ref_names\(\) declares \['memory'\]",
        ),
    ):
        g.TakesTwo_0 = DeclaresRefs()


def test_a_module_with_a_wrong_reset_is_refused() -> None:
    g = fl.Flow(nn.Linear(D, D)).loop(nn.Tanh()).for_(2).build()
    with unchanged(g), pytest.raises(fl.BuildError, match=r"has a reset\(\) method that does not"):
        g.loop_0.body = BadReset()


def test_a_nested_graph_taking_more_inputs_is_refused() -> None:
    g = fl.Flow(nn.Linear(D, D)).through(fl.Flow(nn.Tanh()).label("enc").build()).build()
    two = fl.Flow(nn.Identity()).input("aux").through(TakesTwo()).using("aux").label("enc")
    with unchanged(g), pytest.raises(fl.BuildError, match="accepts 2 inputs"):
        g.enc = two.build()


def test_an_expert_taking_two_inputs_is_refused() -> None:
    g = fl.Flow(nn.Linear(D, D)).gate(fl.SoftmaxRouter(D, 2), nn.Tanh(), nn.Tanh()).build()
    with unchanged(g), pytest.raises(fl.BuildError) as raised:
        setattr(g.gate_0.experts, "1", TakesTwo())
    assert "cannot replace expert 1 of gate_0 in Graph(3 nodes) (Tanh()) with TakesTwo()" in str(
        raised.value
    )
    assert "the expert 1 of gate_0 (TakesTwo()) accepts 2 inputs" in str(raised.value)


def test_a_router_or_selector_for_another_number_of_choices_is_refused() -> None:
    g = (
        fl.Flow(nn.Linear(D, D))
        .gate(fl.SoftmaxRouter(D, 2), nn.Tanh(), nn.Tanh())
        .switch(fl.FixedSelector(0), nn.Tanh(), nn.Tanh())
        .build()
    )
    with unchanged(g), pytest.raises(fl.BuildError, match="chooses among 3 experts"):
        g.gate_0.router = fl.SoftmaxRouter(D, 3)
    with unchanged(g), pytest.raises(fl.BuildError, match="selects a branch that does not exist"):
        g.switch_0.selector = fl.FixedSelector(2)


def test_a_label_taken_by_another_nested_graph_is_refused() -> None:
    g = (
        fl.Flow(fl.Flow(nn.Tanh()).label("a").build())
        .through(fl.Flow(nn.Tanh()).label("b").build())
        .build()
    )
    with unchanged(g), pytest.raises(fl.BuildError, match="two different graphs are labelled 'a'"):
        g.b = fl.Flow(nn.Tanh()).label("a").build()


def test_a_label_clash_found_above_a_loop_body_is_refused_and_undone_below() -> None:
    g = (
        fl.Flow(fl.Flow(nn.Tanh()).label("a").build())
        .loop(fl.Flow(nn.Tanh()).label("b").build())
        .for_(2)
        .build()
    )
    body = g.loop_0.body
    with unchanged(g), pytest.raises(fl.BuildError, match="labelled 'a'"):
        g.loop_0.body = fl.Flow(nn.Tanh()).label("a").build()
    assert g.loop_0.body is body
    assert g.loop_0._body_fn is body
