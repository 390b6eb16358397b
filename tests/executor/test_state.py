"""Forward-reference state: detached by default, opt-in history, first-call values."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl
from tests.support import Mix


def recurrent(dim: int = 4) -> fl.Graph:
    return (
        fl.Flow(nn.Linear(3, dim))
        .through(Mix(dim))
        .using("h")
        .through(nn.Tanh())
        .tag("h")
        .through(nn.Linear(dim, 1))
        .build()
    )


def state_of(g: fl.Graph, tag: str) -> Tensor:
    value = g._plan.cells[tag].value
    assert isinstance(value, Tensor)
    return value


def test_a_thousand_training_steps_keep_no_history() -> None:
    g = recurrent()
    optimizer = torch.optim.SGD(g.parameters(), lr=1e-3)
    for _ in range(1000):
        loss = g(torch.randn(8, 3)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()  # would raise "backward through the graph a second time" with history
        optimizer.step()
        h = state_of(g, "h")
        assert h.grad_fn is None
        assert not h.requires_grad


def test_backprop_state_keeps_history_until_detached() -> None:
    g = recurrent()
    g.backprop_state = True
    x = torch.randn(8, 3)
    g(x).sum().backward()
    assert state_of(g, "h").grad_fn is not None
    out = g(x)
    with pytest.raises(RuntimeError, match="second time"):
        out.sum().backward()
    g.reset_state()
    g(x).sum().backward()
    g.detach_state()
    assert state_of(g, "h").grad_fn is None
    g(x).sum().backward()  # the history was cut: no error


def test_backprop_state_gradient_reaches_the_previous_call() -> None:
    g = recurrent().double()
    g.backprop_state = True
    x1 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    x2 = torch.randn(2, 3, dtype=torch.float64)
    g(x1)
    g(x2).sum().backward()
    assert x1.grad is not None
    assert x1.grad.abs().sum() > 0

    g.backprop_state = False
    g.reset_state()
    x1.grad = None
    g(x1)
    g(x2).sum().backward()
    assert x1.grad is None


class LSTMStep(nn.Module):
    """An LSTM cell whose state ``[h, c]`` (width 2H) differs from its input (width I)."""

    def __init__(self, n_in: int, hidden: int) -> None:
        super().__init__()
        self.hidden = hidden
        self.cell = nn.LSTMCell(n_in, hidden)

    def forward(self, x: Tensor, state: Tensor) -> Tensor:
        h, c = state.split(self.hidden, dim=-1)
        h, c = self.cell(x, (h, c))
        return torch.cat([h, c], dim=-1)


def _lstm_oracle(step: LSTMStep, xs: list[Tensor]) -> list[Tensor]:
    h = torch.zeros(xs[0].shape[0], step.hidden)
    c = torch.zeros_like(h)
    outs = []
    for x in xs:
        h, c = step.cell(x, (h, c))
        outs.append(h)
    return outs


def test_lstm_state_wider_than_the_stream_with_declared_shape() -> None:
    step = LSTMStep(3, 5)
    g = (
        fl.Flow(nn.Identity())
        .through(step)
        .using("hc")
        .tag("hc", init=(10,))
        .through(lambda hc: hc[:, :5])
        .build()
    )
    xs = [torch.randn(4, 3) for _ in range(3)]
    for got, want in zip([g(x) for x in xs], _lstm_oracle(step, xs), strict=True):
        torch.testing.assert_close(got, want)


def test_lstm_state_with_an_init_callable() -> None:
    step = LSTMStep(3, 5)
    g = (
        fl.Flow(nn.Identity())
        .through(step)
        .using("hc")
        .tag("hc", init=lambda x: x.new_zeros(x.shape[0], 10))
        .build()
    )
    assert g(torch.randn(2, 3)).shape == (2, 10)


def test_lstm_state_declared_by_the_module() -> None:
    class DeclaringStep(LSTMStep):
        def initial_state(self, ref: str, stream: Tensor) -> Tensor:
            return stream.new_zeros(stream.shape[0], 2 * self.hidden)

    g = fl.Flow(nn.Identity()).through(DeclaringStep(3, 5)).using("hc").tag("hc").build()
    assert g(torch.randn(2, 3)).shape == (2, 10)


def test_lstm_state_without_declaration_fails_with_a_hint() -> None:
    g = fl.Flow(nn.Identity()).through(LSTMStep(3, 5)).using("hc").tag("hc").build()
    with pytest.raises(fl.GraphError) as info:
        g(torch.randn(2, 3))
    assert info.value.node_id == "LSTMStep_0"
    assert "ref 'hc' (state from the previous call): Tensor[2, 3] float32" in str(info.value)


def test_module_can_ask_for_none_on_the_first_call() -> None:
    class GRUStep(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.cell = nn.GRUCell(3, 6)

        def initial_state(self, ref: str, stream: Tensor) -> None:
            return None  # nn.GRUCell treats None as zeros of the right shape

        def forward(self, x: Tensor, h: Tensor | None) -> Tensor:
            return self.cell(x, h)

    g = fl.Flow(nn.Identity()).through(GRUStep()).using("h").tag("h").build()
    assert g(torch.randn(2, 3)).shape == (2, 6)
    assert g(torch.randn(2, 3)).shape == (2, 6)


def test_first_call_zeros_follow_the_stream_dtype_and_device() -> None:
    seen: list[Tensor] = []

    def consume(x: Tensor, h: Tensor) -> Tensor:
        seen.append(h)
        return x

    g = fl.Flow(nn.Identity()).through(consume).using("h").tag("h").build()
    g(torch.ones(2, 3, dtype=torch.float64))
    assert seen[0].dtype == torch.float64
    assert torch.equal(seen[0], torch.zeros(2, 3, dtype=torch.float64))


def test_batch_size_change_error_says_to_reset() -> None:
    g = recurrent()
    g(torch.randn(8, 3))
    with pytest.raises(fl.GraphError) as info:
        g(torch.randn(5, 3))
    assert "call g.reset_state() when the batch size changes" in str(info.value)
    g.reset_state()
    assert g(torch.randn(5, 3)).shape == (5, 1)


def test_failed_call_leaves_the_state_of_the_last_completed_call() -> None:
    def maybe_fail(x: Tensor) -> Tensor:
        if x.sum() < 0:
            raise ValueError("negative")
        return x

    g = (
        fl.Flow(nn.Identity())
        .through(fl.StateAdd())
        .using("s")
        .tag("s")
        .through(maybe_fail)
        .build()
    )
    g(torch.ones(1))
    with pytest.raises(fl.GraphError):
        g(-10 * torch.ones(1))
    assert g(torch.ones(1)).item() == 2.0


def test_reset_and_detach_recurse_into_nested_graphs_and_modules() -> None:
    detached: list[bool] = []

    class Holder(nn.Module):
        def detach_state(self) -> None:
            detached.append(True)

        def forward(self, x: Tensor) -> Tensor:
            return x

    inner = fl.Flow(Holder()).through(fl.StateAdd()).using("n").tag("n").build()
    inner.backprop_state = True
    outer = fl.Flow(nn.Linear(1, 1)).through(inner).build()
    outer(torch.ones(1, 1))
    assert state_of(inner, "n").grad_fn is not None
    outer.detach_state()
    assert state_of(inner, "n").grad_fn is None
    assert detached == [True]
    outer.reset_state()
    assert inner._plan.cells["n"].value is None


def test_a_failed_outer_call_rolls_back_nested_state() -> None:
    armed = False

    def fail_when_armed(x: Tensor) -> Tensor:
        if armed:
            raise ValueError("armed")
        return x

    inner = fl.Flow(nn.Identity()).through(fl.StateAdd()).using("n").tag("n").build()
    outer = fl.Flow(nn.Identity()).through(inner).through(fail_when_armed).build()
    one = torch.ones(1)
    assert outer(one).item() == 1.0
    armed = True
    with pytest.raises(fl.GraphError):
        outer(one)  # the nested graph ran (n = 2) before the failure
    armed = False
    assert outer(one).item() == 2.0  # as if the failed call never happened


def test_a_cancelled_outer_call_rolls_back_nested_state() -> None:
    ctx = fl.Context()

    def cancel(x: Tensor) -> Tensor:
        ctx.cancel()
        return x

    inner = fl.Flow(nn.Identity()).through(fl.StateAdd()).using("n").tag("n").build()
    outer = fl.Flow(nn.Identity()).through(inner).through(cancel).through(nn.Identity()).build()
    one = torch.ones(1)
    with pytest.raises(fl.Cancelled):
        outer(one, ctx=ctx)
    assert outer(one).item() == 1.0


def test_backprop_state_is_set_on_nested_graphs_too() -> None:
    inner = fl.Flow(nn.Linear(3, 3)).through(Mix(3)).using("h").tag("h").build().double()
    outer = fl.Flow(nn.Identity()).through(inner).build()
    outer.backprop_state = True
    assert inner.backprop_state
    x1 = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    outer(x1)
    outer(torch.randn(2, 3, dtype=torch.float64)).sum().backward()
    assert x1.grad is not None  # reached through the nested graph's state
    outer.backprop_state = False
    assert not inner.backprop_state


def test_init_tensor_is_the_first_value_and_moves_with_the_graph() -> None:
    g = (
        fl.Flow(nn.Identity())
        .through(fl.StateAdd())
        .using("s")
        .tag("s", init=torch.tensor([10.0, 20.0]))
        .build()
    )
    x = torch.tensor([1.0, 2.0])
    torch.testing.assert_close(g(x), torch.tensor([11.0, 22.0]))
    g.reset_state()
    g.double()
    out = g(x.double())
    assert out.dtype == torch.float64
    torch.testing.assert_close(out, torch.tensor([11.0, 22.0], dtype=torch.float64))


def test_init_parameter_is_learned() -> None:
    h0 = nn.Parameter(torch.zeros(1, 4))
    g = fl.Flow(nn.Linear(4, 4)).through(Mix(4)).using("h").tag("h", init=h0).build()
    assert any(p is h0 for p in g.parameters())
    assert "h_init" in dict(g.named_parameters())
    g(torch.randn(3, 4)).sum().backward()
    assert h0.grad is not None
    assert h0.grad.abs().sum() > 0


def test_declared_init_wins_over_the_modules_initial_state() -> None:
    class Declares(nn.Module):
        def initial_state(self, ref: str, stream: Tensor) -> Tensor:
            return torch.full_like(stream, 100.0)

        def forward(self, x: Tensor, s: Tensor) -> Tensor:
            return x + s

    declared = fl.Flow(nn.Identity()).through(Declares()).using("s").tag("s", init=(1,)).build()
    assert declared(torch.ones(1, 1)).item() == 1.0
    undeclared = fl.Flow(nn.Identity()).through(Declares()).using("s").tag("s").build()
    assert undeclared(torch.ones(1, 1)).item() == 101.0
