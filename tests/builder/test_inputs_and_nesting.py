"""`input` (multi-input graphs), `label`, and graphs nested as modules."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl
from tests.support import (
    DOUBLE,
    IDENTITY,
    Mix,
    assert_same_as_oracle,
    fixed_linear,
    gradcheck_graph,
    linear64,
    rand64,
)


class TestInputs:
    def test_multi_input_graph_equals_hand_written_module(self) -> None:
        enc, mix = linear64(3, 4), Mix(4).double()
        g = fl.Flow(enc).input("a", "b").through(mix).using("b", "a").build()
        assert g.input_names == ("x", "a", "b")
        x, a, b = rand64(2, 3), rand64(2, 4), rand64(2, 4)
        assert_same_as_oracle(g, lambda x, a, b: mix(enc(x), b, a), x, a, b)
        gradcheck_graph(g, rand64(2, 3), rand64(2, 4), rand64(2, 4))

    def test_godl_input_forward_and_backward(self) -> None:
        g = (
            fl.Flow(fixed_linear(DOUBLE))
            .tag("main")
            .input("aux")
            .through(fl.Add())
            .using("aux")
            .build()
        )
        x = torch.tensor([[1.0, 2.0]], requires_grad=True)
        aux = torch.tensor([[10.0, 20.0]], requires_grad=True)
        out = g(x, aux)
        torch.testing.assert_close(out, torch.tensor([[12.0, 24.0]]))
        out.sum().backward()
        torch.testing.assert_close(x.grad, torch.tensor([[2.0, 2.0]]))
        torch.testing.assert_close(aux.grad, torch.tensor([[1.0, 1.0]]))

    def test_godl_input_multiple(self) -> None:
        g = (
            fl.Flow(fixed_linear(IDENTITY))
            .input("a", "b")
            .through(fl.Add())
            .using("a")
            .through(fl.Add())
            .using("b")
            .build()
        )
        ones = torch.ones(1, 2)
        torch.testing.assert_close(g(ones, 10 * ones, 100 * ones), 111 * ones)

    def test_input_is_a_tag(self) -> None:
        g = fl.Flow(nn.Identity()).input("mask").build()
        g(torch.zeros(1), torch.ones(1))
        torch.testing.assert_close(g.tagged("mask"), torch.ones(1))

    def test_inputs_can_be_declared_anywhere_and_read_later(self) -> None:
        g = (
            fl.Flow(nn.Identity())
            .through(lambda x: x + 1)
            .input("scale")
            .through(lambda x, s: x * s)
            .using("scale")
            .build()
        )
        assert g(torch.tensor(1.0), torch.tensor(3.0)).item() == 6.0

    @pytest.mark.parametrize("n", [0, 1, 3])
    def test_wrong_number_of_inputs_says_what_is_expected(self, n: int) -> None:
        g = fl.Flow(nn.Identity()).input("case").through(fl.Add()).using("case").build()
        with pytest.raises(
            fl.GraphError, match=r"takes 2 inputs \(x, case\), got " + str(n)
        ) as info:
            g(*[torch.zeros(1)] * n)
        assert "g(x, case)" in str(info.value)

    def test_godl_wrong_input_count_on_single_input_graph(self) -> None:
        g = fl.Flow(nn.Identity()).build()
        with pytest.raises(fl.GraphError, match=r"takes 1 input \(x\), got 2"):
            g(torch.zeros(1), torch.zeros(1))


class TestNesting:
    def test_nested_graph_equals_hand_written_module(self) -> None:
        a, b, head = linear64(3, 3), linear64(3, 3), linear64(3, 1)
        block = fl.Flow(a).through(nn.Tanh()).also(b).build()
        g = fl.Flow(block).through(block).through(head).build()

        def oracle(x: Tensor) -> Tensor:
            def blk(h: Tensor) -> Tensor:
                t = torch.tanh(a(h))
                return t + b(t)

            return head(blk(blk(x)))

        assert_same_as_oracle(g, oracle, rand64(4, 3))
        gradcheck_graph(g, rand64(2, 3))

    def test_graph_used_twice_shares_its_parameters(self) -> None:
        inner = fl.Flow(nn.Linear(4, 4)).through(nn.ReLU()).build()
        outer = fl.Flow(inner).through(inner).through(nn.Linear(4, 1)).build()
        assert len(list(outer.parameters())) == 4
        assert sum(p.numel() for p in outer.parameters()) == 20 + 5

    def test_godl_graph_as_module(self) -> None:
        # inner (I -> ReLU) inside outer (-> sum): [3, -1] -> 3; 4 parameter tensors
        inner = fl.Flow(fixed_linear(IDENTITY)).through(nn.ReLU()).build()
        outer = fl.Flow(inner).through(fixed_linear([[1.0, 1.0]])).build()
        assert outer(torch.tensor([[3.0, -1.0]])).item() == 3.0
        assert len(list(outer.parameters())) == 4

    def test_unbuilt_flow_is_built_as_a_nested_graph(self) -> None:
        g = (
            fl.Flow(nn.Identity())
            .through(fl.Flow(lambda x: x + 1).through(lambda x: 2 * x))
            .build()
        )
        assert g(torch.tensor(1.0)).item() == 4.0
        assert isinstance(g.get_submodule("Graph_0"), fl.Graph)

    def test_nested_graph_inputs_are_fed_by_references(self) -> None:
        inner = fl.Flow(nn.Identity()).input("ctx").through(lambda x, c: x - c).using("ctx").build()
        g = (
            fl.Flow(nn.Identity())
            .tag("orig")
            .through(lambda x: 10 * x)
            .through(inner)
            .using("orig")
            .build()
        )
        assert g(torch.tensor(2.0)).item() == 18.0

    def test_nested_state_is_kept_per_graph(self) -> None:
        counter = (
            fl.Flow(nn.Identity())
            .through(fl.StateAdd())
            .using("n")
            .tag("n")
            .label("counter")
            .build()
        )
        g = fl.Flow(counter).through(lambda x: x * 1).build()
        one = torch.ones(1)
        assert [g(one).item() for _ in range(3)] == [1.0, 2.0, 3.0]
        g.reset_state()  # recursive
        assert g(one).item() == 1.0
        assert counter.label == "counter"

    def test_labelled_graph_is_registered_under_its_label(self) -> None:
        encoder = fl.Flow(nn.Linear(2, 2)).label("encoder").build()
        g = fl.Flow(encoder).through(nn.ReLU()).through(encoder).through(nn.Linear(2, 1)).build()
        assert list(g.state_dict()) == [
            "encoder.Linear_0.weight",
            "encoder.Linear_0.bias",
            "Linear_0.weight",
            "Linear_0.bias",
        ]
        assert g.get_submodule("encoder") is encoder
        assert g.levels[1:3] == (("encoder",), ("ReLU_0",))
        assert g.levels[3] == ("encoder_1",)  # the second use of the shared graph

    def test_label(self) -> None:
        g = fl.Flow(nn.Identity()).label("encoder").build()
        assert g.label == "encoder"
        assert g.short_description() == "Graph 'encoder'"
        assert fl.Flow(nn.Identity()).build().label is None
