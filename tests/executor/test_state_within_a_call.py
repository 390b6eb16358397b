"""State passed between calls of a nested graph within one outer call stays on the tape.

A loop body that is a graph with forward-reference state is called once per
iteration; the state it hands from one iteration to the next must carry its
gradient, exactly as in the hand-unrolled network. What crosses outer calls is
detached unless ``backprop_state`` is set.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

import flowdl as fl
from tests.support import assert_same_as_oracle, linear64, rand64


class Accumulate(nn.Module):
    """``h + w`` (the stream is ignored): an accumulator of a learned step."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.5], dtype=torch.float64))

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        return h + self.w + 0 * x


def accumulator() -> tuple[fl.Graph, Accumulate]:
    step = Accumulate()
    body = fl.Flow(step).using("h").tag("h").build()
    return body, step


def test_an_accumulator_over_three_iterations_has_gradient_three() -> None:
    body, step = accumulator()
    g = fl.Flow(nn.Identity()).loop(body).for_(3).build()
    out = g(torch.zeros(1, 1, dtype=torch.float64))
    (grad,) = torch.autograd.grad(out.sum(), [step.w])
    assert grad.item() == 3.0  # was 1.0: each iteration's state was stored detached


class Cell(nn.Module):
    """``tanh(W x + U h)``: an Elman cell reading its previous output."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w = linear64(dim, dim)
        self.u = linear64(dim, dim)

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        return torch.tanh(self.w(x) + self.u(h))


def test_a_recurrent_loop_body_equals_the_hand_unrolled_network_over_calls() -> None:
    cell = Cell(3)
    head = linear64(3, 3)
    body = fl.Flow(cell).using("h").tag("h").through(head).build()
    g = fl.Flow(nn.Identity()).loop(body).for_(4).build()
    carried: list[Tensor | None] = [None]

    def unrolled(x: Tensor) -> Tensor:
        h = carried[0] if carried[0] is not None else torch.zeros_like(x)
        s = x
        for _ in range(4):
            h = cell(s, h)
            s = head(h)
        carried[0] = h.detach()  # across outer calls the state is detached
        return s

    for _ in range(3):
        x = rand64(2, 3)
        assert_same_as_oracle(
            g, unrolled, x, params=list(cell.parameters()) + list(head.parameters())
        )


def test_the_state_crossing_outer_calls_is_detached_unless_kept() -> None:
    body, step = accumulator()
    g = fl.Flow(nn.Identity()).loop(body).for_(2).build()
    x = torch.zeros(1, 1, dtype=torch.float64)
    g(x)
    out = g(x)  # reads 2w detached, adds 2w on the tape
    (grad,) = torch.autograd.grad(out.sum(), [step.w])
    assert grad.item() == 2.0
    g.backprop_state = True
    g.reset_state()
    first = g(x)
    second = g(x)
    (grad,) = torch.autograd.grad(second.sum(), [step.w])
    assert grad.item() == 4.0
    assert first.item() == 1.0


def test_a_graph_nested_two_levels_deep_keeps_the_tape_across_the_middle_calls() -> None:
    body, step = accumulator()
    middle = fl.Flow(nn.Identity()).loop(body).for_(2).build()
    g = fl.Flow(nn.Identity()).loop(middle).for_(3).build()
    out = g(torch.zeros(1, 1, dtype=torch.float64))
    (grad,) = torch.autograd.grad(out.sum(), [step.w])
    assert grad.item() == 6.0


def test_a_per_sample_halting_loop_with_a_stateful_body_keeps_the_tape() -> None:
    body, step = accumulator()
    g = (
        fl.Flow(nn.Identity())
        .loop(body)
        .while_(lambda s: (s[:, 0] > 5).double(), max_iter=3)
        .build()
    )
    x = torch.tensor([[0.0], [10.0]], dtype=torch.float64)
    out = g(x)
    # sample 0 ran 3 iterations of h += w; sample 1 halted at once and kept its input
    torch.testing.assert_close(out, torch.tensor([[1.5], [10.0]], dtype=torch.float64))
    (grad,) = torch.autograd.grad(out[0].sum(), [step.w])
    assert grad.item() == 3.0


def test_fast_mode_keeps_the_tape_across_iterations_too() -> None:
    body, step = accumulator()
    g = fl.Flow(linear64(1, 1)).loop(body).for_(3).through(linear64(1, 1)).build()
    g.compile(backend="eager")
    x = torch.zeros(1, 1, dtype=torch.float64)
    for _ in range(2):  # a first call, then one reading the carried state
        g.reset_state()
        out = g(x)
        (grad,) = torch.autograd.grad(out.sum(), [step.w])
        head = g.get_submodule("Linear_1")
        assert isinstance(head, nn.Linear)
        torch.testing.assert_close(grad, 3 * head.weight.detach().reshape(1))


def test_torch_compile_keeps_the_tape_across_iterations() -> None:
    body, step = accumulator()
    g = fl.Flow(nn.Identity()).loop(body).for_(3).build()
    compiled = torch.compile(g, backend="eager")
    out = compiled(torch.zeros(1, 1, dtype=torch.float64))
    (grad,) = torch.autograd.grad(out.sum(), [step.w])
    assert grad.item() == 3.0


def test_a_first_call_keeps_no_initial_value_alive() -> None:
    lin = linear64(2, 2)
    g = fl.Flow(lin).through(lambda x, h: x + h).using("h").tag("h", init=lambda s: s * 2).build()
    g(rand64(3, 2))
    assert g._plan.cells["h"].first is None
