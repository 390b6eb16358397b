"""`Flow.loop`: for_, while_ and until, per batch and per sample, against hand-written loops."""

from __future__ import annotations

import threading
from typing import Any

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

# ------------------------------------------------------------ goDl's numbers


def doubling() -> nn.Linear:
    return fixed_linear(DOUBLE)


def plus_bias() -> nn.Linear:
    return fixed_linear(IDENTITY, [0.1, 0.2])


def run(g: fl.Graph, values: list[float]) -> Tensor:
    return g(torch.tensor([values], dtype=torch.float32))


def test_for_doubles_three_times() -> None:
    g = fl.Flow(nn.Identity()).loop(doubling()).for_(3).build()
    assert run(g, [1, 2]).tolist() == [[8, 16]]


def test_for_adds_the_bias_five_times_and_its_gradient_counts_the_iterations() -> None:
    body = plus_bias()
    g = fl.Flow(nn.Identity()).loop(body).for_(5).build()
    out = run(g, [1, 2])
    torch.testing.assert_close(out, torch.tensor([[1.5, 3.0]]))
    out.sum().backward()
    torch.testing.assert_close(body.bias.grad, torch.tensor([5.0, 5.0]))


@pytest.mark.parametrize(
    ("threshold", "max_iter", "start", "want", "iterations"),
    [
        (10, 10, [1, 2], [8, 16], 3),
        (50, 100, [1, 2], [32, 64], 5),
        (0, 10, [3, 7], [3, 7], 0),
    ],
)
def test_while_threshold_halt_doubling(
    threshold: float, max_iter: int, start: list[float], want: list[float], iterations: int
) -> None:
    g = (
        fl.Flow(nn.Identity())
        .loop(doubling())
        .while_(fl.ThresholdHalt(threshold), max_iter)
        .tag("loop")
        .build()
    )
    assert run(g, start).tolist() == [want]
    assert g.iterations("loop").tolist() == [iterations]


def test_while_with_a_bias_runs_four_times_and_the_gradient_counts_them() -> None:
    body = plus_bias()
    g = fl.Flow(nn.Identity()).loop(body).while_(fl.ThresholdHalt(2.7), 10).tag("l").build()
    out = run(g, [1, 2])
    assert g.iterations("l").tolist() == [4]
    out.sum().backward()
    torch.testing.assert_close(body.bias.grad, torch.tensor([4.0, 4.0]))


def test_until_doubling_runs_five_times() -> None:
    g = fl.Flow(nn.Identity()).loop(doubling()).until(lambda s: s.max() - 50, 100).tag("l").build()
    assert run(g, [1, 2]).tolist() == [[32, 64]]
    assert g.iterations("l").tolist() == [5]


def test_until_never_halting_stops_at_max_iter_without_a_last_condition() -> None:
    seen: list[int] = []

    def never(state: Tensor) -> Tensor:
        seen.append(1)
        return torch.tensor(-1.0)

    g = fl.Flow(nn.Identity()).loop(doubling()).until(never, 3).build()
    assert run(g, [1, 2]).tolist() == [[8, 16]]
    assert len(seen) == 2  # not after the last permitted iteration


def test_until_with_a_bias_runs_three_times() -> None:
    body = plus_bias()
    g = fl.Flow(nn.Identity()).loop(body).until(lambda s: s.max() - 2.5, 100).build()
    out = run(g, [1, 2])
    torch.testing.assert_close(out, torch.tensor([[1.3, 2.6]]))
    out.sum().backward()
    torch.testing.assert_close(body.bias.grad, torch.tensor([3.0, 3.0]))


# ------------------------------------------------------ oracle and gradcheck


class Step(nn.Module):
    """A float64 state update that keeps the shape: ``s + tanh(W s)``."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.lin = linear64(dim, dim)

    def forward(self, s: Tensor, *refs: Tensor) -> Tensor:
        out = s + torch.tanh(self.lin(s))
        for r in refs:
            out = out + 0.5 * r
        return out


def norm_above(limit: float) -> Any:
    """A per-sample halt condition: ``[B]``, positive where the row's norm exceeds `limit`."""
    return lambda s: s.norm(dim=-1) - limit


def test_for_loop_with_a_reference_equals_the_hand_written_loop() -> None:
    entry, body = linear64(3, 3), Mix(3).double()
    g = fl.Flow(entry).tag("ctx").through(torch.tanh).loop(body).for_(4).using("ctx").build()

    def oracle(x: Tensor) -> Tensor:
        c = entry(x)
        s = torch.tanh(c)
        for _ in range(4):
            s = body(s, c)
        return s

    assert_same_as_oracle(g, oracle, rand64(5, 3))
    gradcheck_graph(g, rand64(2, 3))


def test_references_reach_a_forward_named_body_by_name() -> None:
    class Named(nn.Module):
        def ref_names(self) -> list[str]:
            return ["bias"]

        def forward_named(self, x: Tensor, refs: dict[str, Tensor]) -> Tensor:
            return x + refs["bias"]

    g = fl.Flow(nn.Identity()).input("bias").loop(Named()).for_(3).using("bias").build()
    out = g(torch.zeros(1, 2), torch.tensor([[1.0, 2.0]]))
    assert out.tolist() == [[3.0, 6.0]]


@pytest.mark.parametrize("mode", ["while_", "until"])
def test_per_sample_halting_equals_running_each_sample_alone(mode: str) -> None:
    body = Step(4)
    cond = norm_above(2.5)
    g = getattr(fl.Flow(nn.Identity()).loop(body), mode)(cond, 8).tag("loop").build()

    def alone(x: Tensor) -> tuple[Tensor, int]:
        s, n = x, 0
        for i in range(8):
            if mode == "while_" and bool(cond(s) > 0):
                break
            s, n = body(s), n + 1
            if mode == "until" and i < 7 and bool(cond(s) > 0):
                break
        return s, n

    def oracle(x: Tensor) -> Tensor:
        return torch.cat([alone(x[i : i + 1])[0] for i in range(x.shape[0])])

    x = rand64(6, 4)
    with torch.no_grad():
        x.mul_(torch.linspace(0.2, 1.5, 6, dtype=torch.float64)[:, None])  # various halting
    assert_same_as_oracle(g, oracle, x)
    counts = [alone(x[i : i + 1])[1] for i in range(6)]
    assert g.iterations("loop").tolist() == counts
    assert len(set(counts)) > 1, "the samples should halt at different iterations"
    gradcheck_graph(g, x.detach().clone().requires_grad_())


def test_a_halted_sample_keeps_its_state_and_gets_no_later_gradient() -> None:
    body = Step(2)
    # sample 0 halts at once, sample 1 never: [B, 1] conditions
    g = fl.Flow(nn.Identity()).input("halt").loop(body).while_(lambda s: halt_flags, 3).build()
    halt_flags = torch.tensor([[1.0], [-1.0]], dtype=torch.float64)
    x = rand64(2, 2)
    out = g(x, torch.zeros(1))
    torch.testing.assert_close(out[0], x[0])
    (grad,) = torch.autograd.grad(out[0].sum(), [x])
    torch.testing.assert_close(grad[0], torch.ones(2, dtype=torch.float64))
    torch.testing.assert_close(grad[1], torch.zeros(2, dtype=torch.float64))


def test_while_halting_every_sample_at_once_runs_no_iteration() -> None:
    g = fl.Flow(nn.Identity()).loop(Step(2)).while_(norm_above(-1.0), 5).tag("l").build()
    x = rand64(3, 2)
    assert torch.equal(g(x), x)
    assert g.iterations("l").tolist() == [0, 0, 0]


def test_a_one_element_condition_halts_the_whole_batch() -> None:
    g = (
        fl.Flow(nn.Identity())
        .loop(doubling())
        .while_(lambda s: (s.max() - 10).reshape(1, 1), 10)
        .tag("l")
        .build()
    )
    out = g(torch.tensor([[1.0, 2.0], [0.5, 0.5], [0.1, 0.1]]))
    assert out.tolist() == [[8, 16], [4, 4], [0.8000000119209290, 0.8000000119209290]]
    assert g.iterations("l").tolist() == [3, 3, 3]


def test_learned_halt_decides_per_sample() -> None:
    halt = fl.LearnedHalt(2)
    with torch.no_grad():
        halt.proj.weight.copy_(torch.tensor([[1.0, 0.0]]))
        halt.proj.bias.fill_(-10.0)  # halt once the first feature passes 10
    g = fl.Flow(nn.Identity()).loop(doubling()).while_(halt, 10).tag("l").build()
    out = g(torch.tensor([[1.0, 1.0], [3.0, 1.0]]))
    assert out.tolist() == [[16, 16], [12, 4]]
    assert g.iterations("l").tolist() == [4, 2]


# ----------------------------------------------------------- the protocols


class TracedBody(nn.Module):
    """Doubles; traces the running state; counts resets."""

    def __init__(self) -> None:
        super().__init__()
        self.state: Tensor | None = None
        self.resets: list[int] = []

    def reset(self, batch_size: int, device: torch.device) -> None:
        self.resets.append(batch_size)
        self.state = torch.zeros(batch_size)

    def forward(self, x: Tensor) -> Tensor:
        y = 2 * x
        self.state = y.sum(-1)
        return y

    def trace(self) -> Tensor:
        assert self.state is not None
        return self.state


def test_traces_for_n_have_n_plus_one_entries_and_reset_runs_once_per_call() -> None:
    body = TracedBody()
    g = fl.Flow(nn.Identity()).loop(body).for_(3).tag("loop").build()
    assert g.traces("loop") is None  # not run yet
    g(torch.ones(2, 1))
    traces = g.traces("loop")
    assert traces is not None
    assert [t.tolist() for t in traces] == [[0, 0], [2, 2], [4, 4], [8, 8]]
    g(torch.ones(5, 1))
    assert body.resets == [2, 5]


def test_traces_of_a_while_loop_follow_the_iterations_it_ran() -> None:
    g = (
        fl.Flow(nn.Identity())
        .loop(TracedBody())
        .while_(fl.ThresholdHalt(10), 10)
        .tag("loop")
        .build()
    )
    g(torch.tensor([[1.0, 2.0]]))
    traces = g.traces("loop")
    assert traces is not None
    assert len(traces) == 1 + 3


def test_traces_and_iterations_of_tags_that_are_not_loops() -> None:
    g = fl.Flow(nn.Identity()).tag("x").loop(doubling()).for_(2).tag("loop").build()
    g(torch.ones(1, 2))
    assert g.traces("x") is None
    assert g.iterations("x") is None
    assert g.traces("loop") is None  # the body has no trace()
    with pytest.raises(KeyError, match="its tags are: x, loop"):
        g.traces("nope")


def test_the_condition_is_reset_too() -> None:
    class ResetCond(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.resets = 0

        def reset(self, batch_size: int, device: torch.device) -> None:
            self.resets += 1

        def forward(self, s: Tensor) -> Tensor:
            return torch.tensor(1.0)

    cond = ResetCond()
    g = fl.Flow(nn.Identity()).loop(doubling()).until(cond, 4).build()
    g(torch.ones(1, 2))
    g(torch.ones(1, 2))
    assert cond.resets == 2


# ------------------------------------------------------- nesting and context


def test_a_nested_graph_body_keeps_its_own_state_across_iterations_and_calls() -> None:
    inner = fl.Flow(nn.Identity()).through(fl.StateAdd()).using("m").tag("m").build()
    g = fl.Flow(nn.Identity()).loop(inner).for_(2).build()
    x = torch.tensor([[1.0]])
    # iteration 1: m = x (first call) ; iteration 2: m = m + m_prev = 2x
    assert g(x).tolist() == [[2.0]]
    # next call: state m = 2; iteration 1: 1 + 2 = 3; iteration 2: 3 + 3 = 6
    assert g(x).tolist() == [[6.0]]
    g.reset_state()
    assert g(x).tolist() == [[2.0]]


def test_a_deadline_stops_a_long_loop_and_the_graph_works_afterwards() -> None:
    limit = [float("inf")]
    g = (
        fl.Flow(nn.Identity())
        .through(fl.StateAdd())
        .using("calls")
        .tag("calls")
        .loop(lambda x: x + 1)
        .while_(lambda s: s.max() - limit[0], 10**9)
        .build()
    )
    with pytest.raises(fl.DeadlineExceeded):
        g(torch.zeros(1), ctx=fl.Context(timeout=0.05))
    limit[0] = 3.0
    # the failed call wrote no state, and the graph runs normally
    assert g(torch.ones(1)).tolist() == [4.0]
    assert g.tagged("calls").tolist() == [1.0]


def test_cancelling_inside_a_loop_stops_it_between_iterations() -> None:
    ctx = fl.Context()
    calls = 0

    def body(x: Tensor) -> Tensor:
        nonlocal calls
        calls += 1
        if calls == 3:
            threading.Thread(target=ctx.cancel).start()
            threading.Event().wait(0.05)
        return x + 1

    g = fl.Flow(nn.Identity()).loop(body).while_(lambda s: torch.tensor(-1.0), 1000).build()
    with pytest.raises(fl.Cancelled):
        g(torch.zeros(1), ctx=ctx)
    assert calls == 3
    calls = 10  # no more cancelling: the graph runs to the end
    assert g(torch.zeros(1)).tolist() == [1000.0]


def test_the_context_reaches_a_nested_graph_in_a_loop_body() -> None:
    ctx = fl.Context()
    seen: list[int] = []

    def cancel_on_third(x: Tensor) -> Tensor:
        seen.append(1)
        if len(seen) == 3:
            ctx.cancel()
        return x

    inner = fl.Flow(cancel_on_third).through(nn.Identity()).build()
    g = fl.Flow(nn.Identity()).loop(inner).for_(10).build()
    with pytest.raises(fl.Cancelled):
        g(torch.zeros(1), ctx=ctx)
    assert len(seen) == 3  # the inner graph's next node saw the cancellation


# ------------------------------------------------------------- runtime errors


def test_a_condition_of_the_wrong_shape_is_a_clear_error() -> None:
    g = fl.Flow(nn.Identity()).loop(doubling()).while_(lambda s: s, 3).build()
    with pytest.raises(fl.GraphError) as info:
        g(torch.ones(4, 2))
    text = str(info.value)
    assert "loop_0: the halt condition returned" in text
    assert "[4] or [4, 1]" in text
    assert "Tensor[4, 2]" in text


def test_per_sample_halting_with_a_body_that_changes_the_shape_is_a_clear_error() -> None:
    g = (
        fl.Flow(nn.Identity())
        .loop(lambda s: torch.cat([s, s], -1))
        .until(lambda s: s.sum(-1) - 100, 3)
        .build()
    )
    with pytest.raises(fl.GraphError, match="keep the state's shape"):
        g(torch.ones(2, 1))


def test_a_failing_body_names_the_iteration_and_chains_the_cause() -> None:
    def fail_late(x: Tensor) -> Tensor:
        if x.sum() > 3:
            raise ValueError("too big")
        return x + 1

    g = fl.Flow(nn.Identity()).loop(fail_late).for_(10).build()
    with pytest.raises(fl.GraphError, match=r"at iteration 4 \(0-based\)") as info:
        g(torch.zeros(1))
    assert isinstance(info.value.__cause__.__cause__, ValueError)
    assert "too big" in str(info.value)
