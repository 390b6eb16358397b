"""`using`: backward references (this call) and forward references (the previous call)."""

from __future__ import annotations

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


class TestBackwardReferences:
    def test_skip_connection_equals_hand_written_module(self) -> None:
        enc, mid, mix = linear64(3, 4), linear64(4, 4), Mix(4).double()
        g = (
            fl.Flow(enc)
            .tag("skip")
            .through(mid)
            .through(nn.Tanh())
            .through(mix)
            .using("skip")
            .build()
        )

        def oracle(x: Tensor) -> Tensor:
            s = enc(x)
            return mix(torch.tanh(mid(s)), s)

        assert_same_as_oracle(g, oracle, rand64(5, 3))
        gradcheck_graph(g, rand64(2, 3))

    def test_references_arrive_in_using_order(self) -> None:
        g = (
            fl.Flow(nn.Identity())
            .tag("a")
            .through(lambda x: x + 1)
            .tag("b")
            .through(lambda x, p, q: 100 * x + 10 * p + q)
            .using("b")
            .using("a")
            .build()
        )
        assert g(torch.tensor(1.0)).item() == 200 + 20 + 1

    def test_also_references_go_to_the_inner_module(self) -> None:
        g = fl.Flow(nn.Identity()).tag("x0").also(lambda x, x0: x * x0).using("x0").build()
        torch.testing.assert_close(g(torch.tensor([3.0])), torch.tensor([12.0]))

    def test_godl_using(self) -> None:
        # entry.Tag("src") -> 2I -> Add().Using("src") on [1,3] -> [3,9]
        entry, double = fixed_linear(IDENTITY), fixed_linear(DOUBLE)
        g = fl.Flow(entry).tag("src").through(double).through(fl.Add()).using("src").build()
        out = g(torch.tensor([[1.0, 3.0]]))
        torch.testing.assert_close(out, torch.tensor([[3.0, 9.0]]))
        out.sum().backward()  # goDl UsingBackward: both paths reach the entry
        torch.testing.assert_close(
            entry.weight.grad, torch.tensor([[3.0, 3.0], [3.0, 3.0]]) * torch.tensor([[1.0, 3.0]])
        )
        assert double.bias.grad is not None

    def test_tag_does_not_change_the_output(self) -> None:
        # goDl Tag: [3,5] through I and a summing layer -> 8
        g = (
            fl.Flow(fixed_linear(IDENTITY))
            .tag("hidden")
            .through(fixed_linear([[1.0, 1.0]]))
            .build()
        )
        assert g(torch.tensor([[3.0, 5.0]])).item() == 8.0
        torch.testing.assert_close(g.tagged("hidden"), torch.tensor([[3.0, 5.0]]))


class Cell(nn.Module):
    """``tanh(W x + U h)``: a tiny recurrent cell."""

    def __init__(self, n_in: int, n_hidden: int) -> None:
        super().__init__()
        self.w = nn.Linear(n_in, n_hidden)
        self.u = nn.Linear(n_hidden, n_hidden, bias=False)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        return torch.tanh(self.w(x) + self.u(h))


class TestForwardReferences:
    def _rnn(self) -> tuple[fl.Graph, nn.Module]:
        enc, cell, dec = linear64(3, 4), Cell(4, 4).double(), linear64(4, 2)
        g = fl.Flow(enc).through(cell).using("h").tag("h").through(dec).build()

        class Oracle(nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.h: Tensor | None = None

            def forward(self, x: Tensor) -> Tensor:
                z = enc(x)
                h = cell(z, torch.zeros_like(z) if self.h is None else self.h)
                self.h = h.detach()
                return dec(h)

        return g, Oracle()

    def test_recurrent_state_equals_hand_written_module_over_calls(self) -> None:
        g, oracle = self._rnn()
        for _ in range(4):
            assert_same_as_oracle(g, oracle, rand64(5, 3))

    def test_gradcheck_with_state_from_a_previous_call(self) -> None:
        g, _ = self._rnn()
        earlier = rand64(2, 3, grad=False)

        def restore() -> None:
            g.reset_state()
            g(earlier)

        gradcheck_graph(g, rand64(2, 3), before=restore)

    def test_godl_forward_ref_accumulates(self) -> None:
        # goDl ForwardRef: x, 2x, 3x on three calls through StateAdd
        g = (
            fl.Flow(fixed_linear(IDENTITY))
            .through(fl.StateAdd())
            .using("memory")
            .tag("memory")
            .build()
        )
        x = torch.tensor([[1.0, 2.0]])
        outs = [g(x) for _ in range(3)]
        for k, out in enumerate(outs, start=1):
            torch.testing.assert_close(out, k * x)

    def test_godl_reset_state_starts_over(self) -> None:
        g = fl.Flow(nn.Identity()).through(fl.StateAdd()).using("memory").tag("memory").build()
        x = torch.tensor([1.0, 1.0])
        g(x)
        g(x)
        g.reset_state()
        torch.testing.assert_close(g(x), x)

    def test_godl_same_tag_as_forward_and_backward_reference(self) -> None:
        # consumers before the tag see the previous call, consumers after see this call
        g = (
            fl.Flow(nn.Identity())
            .through(fl.StateAdd())
            .using("t")
            .tag("t")
            .through(fl.Add())
            .using("t")
            .build()
        )
        x = torch.tensor([1.0, 2.0])
        torch.testing.assert_close(g(x), torch.tensor([2.0, 4.0]))
        torch.testing.assert_close(g(x), torch.tensor([4.0, 8.0]))

    def test_godl_auto_zero_lets_plain_add_consume_state(self) -> None:
        g = fl.Flow(nn.Identity()).through(fl.Add()).using("m").tag("m").build()
        x = torch.tensor([1.0, 2.0])
        torch.testing.assert_close(g(x), x)
        torch.testing.assert_close(g(x), 2 * x)

    def test_godl_forward_ref_backward_reaches_every_module(self) -> None:
        entry, proj = fixed_linear(IDENTITY), fixed_linear(DOUBLE)
        g = fl.Flow(entry).through(fl.Add()).using("mem").through(proj).tag("mem").build()
        x = torch.tensor([[1.0, 2.0]])
        g(x)
        out = g(x)  # (x + 2x) * 2
        torch.testing.assert_close(out, torch.tensor([[6.0, 12.0]]))
        out.sum().backward()
        assert entry.weight.grad is not None
        assert proj.weight.grad is not None

    def test_state_written_by_a_split_branch_via_tag_group(self) -> None:
        g = (
            fl.Flow(nn.Identity())
            .through(fl.Add())
            .using("h_1")
            .split(lambda x: x, lambda x: x + 1)
            .tag_group("h")
            .merge(fl.Mean())
            .build()
        )
        x = torch.tensor([0.0])
        outs = [g(x).item() for _ in range(3)]
        # h_1 = (x + h_1_prev) + 1: 1, 2, 3; output = mean(s, s + 1) with s = x + h_1_prev
        assert outs == [0.5, 1.5, 2.5]

    def test_each_consumer_of_one_state_reads_the_same_value(self) -> None:
        g = (
            fl.Flow(nn.Identity())
            .through(lambda x, h: x + h)
            .using("h")
            .through(lambda x, h: x * 10 + h)
            .using("h")
            .tag("h")
            .build()
        )
        x = torch.tensor([1.0])
        assert g(x).item() == 10.0  # (1 + 0) * 10 + 0
        assert g(x).item() == (1 + 10) * 10 + 10
