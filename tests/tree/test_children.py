"""Which graphs are children: node modules, construct insides, plain modules; label checks."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import flowdl as fl


def labelled(name: str, module: nn.Module | None = None) -> fl.Graph:
    return fl.Flow(module if module is not None else nn.Identity()).tag("t").label(name).build()


def test_children_inside_every_construct() -> None:
    g = (
        fl.Flow(labelled("node"))
        .loop(labelled("body"))
        .while_(labelled("cond", fl.ThresholdHalt(100.0)), 2)
        .gate(labelled("router", fl.SoftmaxRouter(3, 2)), labelled("expert0"), nn.Identity())
        .switch(labelled("selector", fl.FixedSelector(1)), nn.Identity(), labelled("branch1"))
        .map(labelled("mapped"))
        .each()
        .build()
    )
    assert list(g.subgraphs()) == [
        "node",
        "body",
        "cond",
        "router",
        "expert0",
        "selector",
        "branch1",
        "mapped",
    ]
    g(torch.randn(2, 3))
    for name in g.subgraphs():
        assert g.validate_path(f"{name}.t") is fl.PathKind.TAG
    assert g.tagged_at("mapped.t").shape == (1, 3)  # the last row the map body saw


def test_children_inside_plain_modules() -> None:
    class Wrapper(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = nn.Sequential(nn.Identity(), labelled("deep"))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.inner(x)

    g = fl.Flow(Wrapper()).build()
    assert list(g.subgraphs()) == ["deep"]


def test_an_unlabelled_graph_is_not_part_of_the_tree() -> None:
    hidden = fl.Flow(labelled("inside")).build()  # no label
    g = fl.Flow(hidden).build()
    assert g.subgraphs() == {}
    assert list(hidden.subgraphs()) == ["inside"]
    with pytest.raises(KeyError, match="no nested graph 'inside'"):
        g.validate_path("inside.t")


def test_a_shared_graph_is_one_child() -> None:
    block = labelled("block")
    g = fl.Flow(block).through(nn.ReLU()).loop(block).for_(2).build()
    assert g.subgraphs() == {"block": block}


def test_two_graphs_with_one_label_inside_constructs_are_a_build_error() -> None:
    with pytest.raises(fl.BuildError) as info:
        fl.Flow(nn.Identity()).gate(fl.SoftmaxRouter(3, 2), labelled("e"), labelled("e")).build()
    error = info.value
    assert error.problem == "two different graphs are labelled 'e' in this graph"
    assert error.received == "Graph 'e' at gate_0.experts.0, and another at gate_0.experts.1"
    assert error.call == ".build() (builder call #3)"
    with pytest.raises(fl.BuildError, match="two different graphs are labelled 'x'"):
        fl.Flow(labelled("x")).loop(labelled("x")).for_(2).build()


def test_labels_clashing_with_tags() -> None:
    with pytest.raises(fl.BuildError) as info:
        fl.Flow(nn.Identity()).tag("encoder").through(labelled("encoder")).build()
    assert (
        info.value.problem == "the label 'encoder' of a nested graph is also a tag of another node"
    )
    assert ".tag('encoder_out')" in str(info.value.fix)
    with pytest.raises(fl.BuildError, match="is also a tag group of this graph"):
        (
            fl.Flow(labelled("h"))
            .split(nn.Identity(), nn.Identity())
            .tag_group("h")
            .merge(fl.Add())
            .build()
        )
    # a tag on the node that holds the graph means the same modules: allowed
    encoder = labelled("encoder", nn.Linear(2, 2))
    g = fl.Flow(encoder).tag("encoder").build()
    assert g.validate_path("encoder") is fl.PathKind.SUBGRAPH
    scan = labelled("scan", nn.Linear(2, 2))
    looped = fl.Flow(nn.Identity()).loop(scan).for_(2).tag("scan").build()
    assert looped.subgraph("scan") is scan
    assert looped.parameters_at("scan") == list(scan.parameters())


@pytest.mark.parametrize("name", ["a.b", "", "has space"])
def test_dots_and_spaces_in_labels_are_build_errors(name: str) -> None:
    with pytest.raises(fl.BuildError, match="is not a valid label name"):
        fl.Flow(nn.Identity()).label(name)
