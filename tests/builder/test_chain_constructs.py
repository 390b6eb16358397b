"""`Flow`, `through`, `also`, `fork`: each against a hand-written module, and gradcheck."""

from __future__ import annotations

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


class TestThrough:
    def test_chain_equals_hand_written_module(self) -> None:
        a, b = linear64(3, 5), linear64(5, 2)
        g = fl.Flow(a).through(nn.Tanh()).through(b).build()

        class Oracle(nn.Module):
            def forward(self, x: Tensor) -> Tensor:
                return b(torch.tanh(a(x)))

        assert_same_as_oracle(g, Oracle(), rand64(4, 3))

    def test_gradcheck(self) -> None:
        g = fl.Flow(linear64(3, 4)).through(nn.Tanh()).through(linear64(4, 2)).build()
        gradcheck_graph(g, rand64(2, 3))

    def test_plain_callables_are_nodes(self) -> None:
        g = fl.Flow(torch.sin).through(lambda x: x * 3).through(torch.cos).build()
        x = rand64(5)
        assert_same_as_oracle(g, lambda x: torch.cos(torch.sin(x) * 3), x, params=[])
        gradcheck_graph(g, rand64(5))

    def test_godl_chain_forward(self) -> None:
        # goDl ChainForward: Linear(W=[[1,0],[0,1],[1,1]]) -> ReLU -> Linear(W=[1,1,1]) on [1,2] = 6
        first = fixed_linear([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
        last = fixed_linear([[1.0, 1.0, 1.0]])
        g = fl.Flow(first).through(nn.ReLU()).through(last).build()
        assert g(torch.tensor([[1.0, 2.0]])).item() == 6.0

    def test_godl_parameters(self) -> None:
        g = fl.Flow(nn.Linear(2, 3)).through(nn.ReLU()).through(nn.Linear(3, 1)).build()
        assert len(list(g.parameters())) == 4


class TestAlso:
    def test_residual_equals_hand_written_module(self) -> None:
        a, m = linear64(3, 4), linear64(4, 4)
        g = fl.Flow(a).also(m).build()

        class Oracle(nn.Module):
            def forward(self, x: Tensor) -> Tensor:
                h = a(x)
                return h + m(h)

        assert_same_as_oracle(g, Oracle(), rand64(5, 3))
        gradcheck_graph(g, rand64(2, 3))

    def test_godl_also(self) -> None:
        # goDl Also: I then Also(2I) on [1,3] -> [3,9]
        g = fl.Flow(fixed_linear(IDENTITY)).also(fixed_linear(DOUBLE)).build()
        torch.testing.assert_close(g(torch.tensor([[1.0, 3.0]])), torch.tensor([[3.0, 9.0]]))

    def test_residual_broadcasts(self) -> None:
        g = fl.Flow(nn.Identity()).also(lambda x: x.sum(-1, keepdim=True)).build()
        x = torch.tensor([[1.0, 2.0]])
        torch.testing.assert_close(g(x), torch.tensor([[4.0, 5.0]]))


class TestFork:
    def test_side_output_feeds_a_later_node(self) -> None:
        a, side, mix = linear64(3, 4), linear64(4, 2), linear64(6, 4)
        g = (
            fl.Flow(a)
            .fork(side)
            .tag("side")
            .through(nn.Tanh())
            .through(lambda h, s: mix(torch.cat([h, s], -1)))
            .using("side")
            .build()
        )

        def oracle(x: Tensor) -> Tensor:
            h = a(x)
            return mix(torch.cat([torch.tanh(h), side(h)], -1))

        assert_same_as_oracle(
            g, oracle, rand64(5, 3), params=[*a.parameters(), *side.parameters(), *mix.parameters()]
        )
        gradcheck_graph(g, rand64(2, 3))

    def test_fork_keeps_the_stream_and_tags_the_side(self) -> None:
        g = (
            fl.Flow(nn.Identity())
            .fork(lambda x: 10 * x)
            .tag("side")
            .through(lambda x: x + 1)
            .build()
        )
        x = torch.tensor([1.0, 2.0])
        torch.testing.assert_close(g(x), torch.tensor([2.0, 3.0]))
        torch.testing.assert_close(g.tagged("side"), torch.tensor([10.0, 20.0]))

    def test_fork_module_can_take_references(self) -> None:
        g = (
            fl.Flow(nn.Identity())
            .tag("input")
            .through(lambda x: x * 2)
            .fork(lambda x, inp: x - inp)
            .using("input")
            .tag("delta")
            .build()
        )
        g(torch.tensor([3.0]))
        torch.testing.assert_close(g.tagged("delta"), torch.tensor([3.0]))

    def test_several_forks_read_one_latent(self) -> None:
        heads = [linear64(4, 1) for _ in range(3)]
        enc = linear64(2, 4)
        flow = fl.Flow(enc).tag("latent")
        for k, head in enumerate(heads):
            flow = flow.fork(head).tag(f"head{k}")
        g = (
            flow.through(lambda z, *hs: z.sum(-1, keepdim=True) + sum(hs))
            .using("head0", "head1", "head2")
            .build()
        )

        def oracle(x: Tensor) -> Tensor:
            z = enc(x)
            return z.sum(-1, keepdim=True) + heads[0](z) + heads[1](z) + heads[2](z)

        assert_same_as_oracle(g, oracle, rand64(3, 2))
        gradcheck_graph(g, rand64(2, 2))
