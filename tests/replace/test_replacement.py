"""Replacing a submodule of a built graph replaces it in the forward pass.

Every test checks values and gradients against a hand-written oracle that calls
the new modules (float64), and that the old module no longer runs.
"""

from __future__ import annotations

import copy
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl
from tests.support import assert_same_as_oracle

D = 4


def lin(d_in: int = D, d_out: int = D) -> nn.Linear:
    return nn.Linear(d_in, d_out).double()


def x64(batch: int = 5) -> Tensor:
    return torch.randn(batch, D, dtype=torch.float64, requires_grad=True)


def never_runs(module: nn.Module) -> None:
    """Make any call of `module` fail the test."""

    def hook(*_: Any) -> None:
        raise AssertionError(f"the replaced module {module} ran")

    module.register_forward_pre_hook(hook)


def replace(parent: nn.Module, name: str, new: nn.Module, how: str) -> None:
    """Replace child `name` of `parent` the way a tool would."""
    if how == "setattr":
        setattr(parent, name, new)
    elif how == "add_module":
        parent.add_module(name, new)
    elif how == "register_module":
        parent.register_module(name, new)
    else:  # eager-mode quantization writes the dict directly
        parent._modules[name] = new


WAYS = ["setattr", "add_module", "register_module", "modules_dict"]


# ---------------------------------------------------------------- nodes


@pytest.mark.parametrize("how", WAYS)
def test_a_node_module_replaced_runs_in_the_forward(how: str) -> None:
    g = fl.Flow(lin()).through(nn.Tanh()).through(lin()).build()
    old, new = g.Linear_1, lin()
    never_runs(old)
    replace(g, "Linear_1", new, how)
    assert g.Linear_1 is new
    assert [p for _, p in g.named_parameters()][2] is new.weight
    assert_same_as_oracle(g, lambda x: new(torch.tanh(g.Linear_0(x))), x64())
    g(x64()).sum().backward()
    assert new.weight.grad is not None
    assert old.weight.grad is None


def test_a_module_used_by_several_nodes_is_replaced_in_all_of_them() -> None:
    shared = lin()
    g = (
        fl.Flow(shared)
        .through(nn.Tanh())
        .through(shared)
        .split(shared, nn.Identity())
        .merge(fl.Add())
        .build()
    )
    assert list(g._modules) == ["Linear_0", "Tanh_0", "Identity_0", "Add_0"]
    new = lin()
    never_runs(shared)
    g.Linear_0 = new
    assert [n.id for n in g._record.nodes if n.module is new] == [
        "Linear_0",
        "Linear_1",
        "Linear_2",
    ]

    def oracle(x: Tensor) -> Tensor:
        h = new(torch.tanh(new(x)))
        return new(h) + h

    assert_same_as_oracle(g, oracle, x64())


def test_two_node_modules_swapped_run_swapped() -> None:
    g = fl.Flow(lin()).through(nn.Tanh()).through(lin()).build()
    first, second = g.Linear_0, g.Linear_1
    g.Linear_0, g.Linear_1 = g.Linear_1, g.Linear_0  # halfway, both names hold `second`
    assert g.Linear_0 is second
    assert g.Linear_1 is first
    assert_same_as_oracle(g, lambda x: first(torch.tanh(second(x))), x64())


def test_a_tie_made_after_build_can_be_undone() -> None:
    g = fl.Flow(lin()).through(nn.Tanh()).through(lin()).build()
    first = g.Linear_0
    g.Linear_1 = g.Linear_0  # tie the two layers
    assert_same_as_oracle(g, lambda x: first(torch.tanh(first(x))), x64())
    untied = lin()
    g.Linear_1 = untied  # only the node behind Linear_1 changes
    assert g.Linear_0 is first
    assert_same_as_oracle(g, lambda x: untied(torch.tanh(first(x))), x64())


def test_an_alias_of_a_node_module_is_a_child_like_any_other() -> None:
    g = fl.Flow(lin()).through(nn.Tanh()).build()
    layer = g.Linear_0
    g.alias = layer
    del g.alias  # the node runs the module registered as Linear_0, which stays
    g.alias = layer
    other = lin()
    never_runs(other)
    g.alias = other  # moves no node: no node stands behind the name "alias"
    assert g.Linear_0 is layer
    assert_same_as_oracle(g, lambda x: torch.tanh(layer(x)), x64())
    assert list(g.state_dict()) == [
        "Linear_0.weight",
        "Linear_0.bias",
        "alias.weight",
        "alias.bias",
    ]


def test_a_node_with_references_gets_them_after_replacement() -> None:
    class Mix(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = lin()

        def forward(self, x: Tensor, skip: Tensor) -> Tensor:
            return self.a(x) * skip

    g = fl.Flow(lin()).tag("skip").through(nn.Tanh()).through(Mix()).using("skip").build()
    new = Mix()
    g.Mix_0 = new
    assert_same_as_oracle(g, lambda x: new(torch.tanh(g.Linear_0(x)), g.Linear_0(x)), x64())


def test_a_replacement_inside_a_plain_container_needs_nothing_from_the_graph() -> None:
    g = fl.Flow(nn.Sequential(lin(), nn.Tanh())).through(lin()).build()
    new = lin()
    g.Sequential_0[0] = new  # nn.Sequential calls its children: no plan involved
    assert_same_as_oracle(g, lambda x: g.Linear_0(torch.tanh(new(x))), x64())


# ---------------------------------------------------------- nested graphs


def test_a_node_of_a_nested_graph_replaced_at_any_depth() -> None:
    deepest = fl.Flow(lin()).through(nn.Tanh()).label("deepest").build()
    middle = fl.Flow(deepest).through(lin()).label("middle").build()
    g = fl.Flow(lin()).through(middle).build()
    new = lin()
    never_runs(deepest.Linear_0)
    g.middle.deepest.Linear_0 = new
    assert g.subgraph("middle.deepest").Linear_0 is new

    def oracle(x: Tensor) -> Tensor:
        return middle.Linear_0(torch.tanh(new(g.Linear_0(x))))

    assert_same_as_oracle(g, oracle, x64())


def test_a_nested_graph_replaced_by_another_graph() -> None:
    g = fl.Flow(lin()).through(fl.Flow(lin()).label("enc").build()).build()
    other = fl.Flow(lin()).through(nn.Tanh()).label("enc").build()
    g.enc = other
    assert g.subgraph("enc") is other
    assert_same_as_oracle(g, lambda x: torch.tanh(other.Linear_0(g.Linear_0(x))), x64())


# ------------------------------------------------------------- constructs


@pytest.mark.parametrize("how", WAYS)
def test_a_loop_body_replaced(how: str) -> None:
    g = fl.Flow(lin()).loop(lin()).for_(3).build()
    new = nn.Sequential(lin(), nn.Tanh())
    never_runs(g.loop_0.body)
    replace(g.loop_0, "body", new, how)
    assert g.loop_0._body_fn is new

    def oracle(x: Tensor) -> Tensor:
        h = g.Linear_0(x)
        for _ in range(3):
            h = new(h)
        return h

    assert_same_as_oracle(g, oracle, x64())


def test_a_halt_condition_and_a_body_with_references_replaced() -> None:
    class Step(nn.Module):
        def __init__(self, scale: float) -> None:
            super().__init__()
            self.scale = nn.Parameter(torch.tensor(scale, dtype=torch.float64))

        def forward(self, h: Tensor, bias: Tensor) -> Tensor:
            return h * self.scale + 0.1 * bias

    class Halt(nn.Module):
        def __init__(self, limit: float) -> None:
            super().__init__()
            self.limit = limit

        def forward(self, h: Tensor) -> Tensor:
            return h.norm(dim=-1) - self.limit

    g = (
        fl.Flow(lin())
        .tag("bias")
        .loop(Step(0.5))
        .until(Halt(100.0), 6)
        .using("bias")
        .tag("out")
        .build()
    )
    body, cond = Step(1.5), Halt(3.0)
    g.loop_0.body = body
    g.loop_0.cond = cond

    def oracle(x: Tensor) -> Tensor:
        bias = g.Linear_0(x)
        rows = []
        for i in range(x.shape[0]):
            h = bias[i : i + 1]
            for k in range(6):
                h = body(h, bias[i : i + 1])
                if k + 1 < 6 and float(cond(h).detach()) > 0:
                    break
            rows.append(h)
        return torch.cat(rows)

    x = (3 * torch.randn(6, D, dtype=torch.float64)).requires_grad_()
    assert_same_as_oracle(g, oracle, x, none_is_zero=True)
    counts = g.iterations("out")
    assert counts is not None
    assert int(counts.min()) < 6


def test_a_loop_body_that_traces_after_replacement() -> None:
    class Traced(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = lin()
            self.seen: list[Tensor] = []

        def forward(self, h: Tensor) -> Tensor:
            out = self.a(h)
            self.seen.append(out)
            return out

        def trace(self) -> Tensor:
            return self.seen[-1] if self.seen else torch.zeros(())

    g = fl.Flow(lin()).loop(lin()).for_(2).tag("loop").build()
    g(x64())
    assert g.traces("loop") is None
    g.loop_0.body = Traced()
    g(x64())
    traces = g.traces("loop")
    assert traces is not None
    assert len(traces) == 3


@pytest.mark.parametrize("how", WAYS)
def test_a_gate_router_and_expert_replaced(how: str) -> None:
    g = fl.Flow(lin()).gate(fl.TopKRouter(D, 2, 1), lin(), lin()).build()
    assert g.gate_0.sparse
    router = fl.SoftmaxRouter(D, 2).double()
    expert = nn.Sequential(lin(), nn.Tanh())
    never_runs(g.gate_0.router)
    never_runs(g.gate_0.experts[1])
    replace(g.gate_0, "router", router, how)
    replace(g.gate_0.experts, "1", expert, how)
    assert not g.gate_0.sparse
    assert g.gate_0.experts[1] is expert

    def oracle(x: Tensor) -> Tensor:
        h = g.Linear_0(x)
        w = router(h)
        return w[:, :1] * g.gate_0.experts[0](h) + w[:, 1:] * expert(h)

    assert_same_as_oracle(g, oracle, x64())


def test_a_switch_selector_and_branch_replaced() -> None:
    g = fl.Flow(lin()).switch(fl.FixedSelector(0), lin(), lin()).build()
    branch = nn.Sequential(lin(), nn.Tanh())
    g.switch_0.selector = fl.FixedSelector(1)
    setattr(g.switch_0.branches, "1", branch)
    never_runs(g.switch_0.branches[0])
    assert_same_as_oracle(g, lambda x: branch(g.Linear_0(x)), x64())


@pytest.mark.parametrize("batched", [False, True])
def test_a_map_body_replaced(batched: bool) -> None:
    builder = fl.Flow(lin()).map(lin())
    g = (builder.batched() if batched else builder).each().build()
    new = nn.Sequential(lin(), nn.Tanh())
    g.map_0.body = new
    assert_same_as_oracle(g, lambda x: new(g.Linear_0(x)), x64())


def test_an_expert_inside_a_graph_inside_a_loop_body_replaced() -> None:
    body = fl.Flow(nn.Identity()).gate(fl.SoftmaxRouter(D, 2), lin(), nn.Tanh()).build()
    g = fl.Flow(lin()).loop(body).for_(2).build().double()
    new = lin()
    g.loop_0.body.gate_0.experts.add_module("0", new)

    def oracle(x: Tensor) -> Tensor:
        h = g.Linear_0(x)
        for _ in range(2):
            w = body.gate_0.router(h)
            h = w[:, :1] * new(h) + w[:, 1:] * torch.tanh(h)
        return h

    assert_same_as_oracle(g, oracle, x64())


def test_a_plain_function_body_replaced_by_a_module_and_by_a_function() -> None:
    g = fl.Flow(lin()).loop(lambda h: 2 * h).for_(2).build()
    g.loop_0.body = torch.tanh
    assert_same_as_oracle(g, lambda x: torch.tanh(torch.tanh(g.Linear_0(x))), x64())
    new = lin()
    g.loop_0.body = new
    assert "body" in g.loop_0._modules
    assert_same_as_oracle(g, lambda x: new(new(g.Linear_0(x))), x64())


# ---------------------------------------------------------------- state


def test_state_across_calls_survives_a_replacement() -> None:
    inner = fl.Flow(fl.StateAdd()).using("h").through(lin()).tag("h").label("cell").build()
    g = fl.Flow(lin()).through(fl.StateAdd()).using("s").through(inner).tag("s").build()
    cells = (g._plan.cells["s"], inner._plan.cells["h"])
    x1, x2 = x64(), x64()
    g(x1)
    s1, h1 = cells[0].value.clone(), cells[1].value.clone()
    new_outer, new_inner = lin(), lin()
    g.Linear_0 = new_outer
    inner.Linear_0 = new_inner
    assert (g._plan.cells["s"], inner._plan.cells["h"]) == cells  # the same cells
    assert cells[1] in g._nested_cells

    def oracle(x: Tensor) -> Tensor:
        u = new_outer(x) + s1
        return new_inner(u + h1)

    out = g(x2)
    torch.testing.assert_close(out, oracle(x2), rtol=0, atol=1e-12)


def test_a_declared_initial_state_moved_by_double_stays_moved() -> None:
    flow = (
        fl.Flow(nn.Linear(D, D)).through(fl.StateAdd()).using("h").tag("h", init=torch.ones(1, D))
    )
    graph = flow.build().double()
    new = lin()
    graph.Linear_0 = new
    (read,) = graph._plan.state_reads
    assert isinstance(read.init, Tensor)
    assert read.init.dtype == torch.float64
    x = x64()
    torch.testing.assert_close(graph(x), new(x) + 1, rtol=0, atol=1e-12)


# ------------------------------------------------------ what stays the same


def test_a_graph_whose_modules_are_not_replaced_keeps_its_plan() -> None:
    g = fl.Flow(lin()).loop(lin()).for_(2).gate(fl.SoftmaxRouter(D, 2), lin(), lin()).build()
    plan, steps, loop_body = g._plan, g._plan.steps, g.loop_0._body_fn
    nn.SyncBatchNorm.convert_sync_batchnorm(g)  # re-adds every child, converts nothing
    g.add_module("Linear_0", g.Linear_0)
    g.loop_0.body = g.loop_0.body
    g.backprop_state = True  # plain attributes
    assert g._plan is plan
    assert g._plan.steps is steps
    assert g.loop_0._body_fn is loop_body


def test_copies_follow_their_own_replacements() -> None:
    g = fl.Flow(lin()).loop(lin()).for_(2).build()
    x = x64()
    before = g(x).detach()
    twin = copy.deepcopy(g)
    restored = pickle.loads(pickle.dumps(g))
    for other in (twin, restored):
        new = lin()
        other.loop_0.body = new
        torch.testing.assert_close(other(x), new(new(other.Linear_0(x))))
    torch.testing.assert_close(g(x), before)  # the original still runs its own modules
    new = lin()
    g.loop_0.body = new
    torch.testing.assert_close(g(x), new(new(g.Linear_0(x))))


def test_profiling_and_observation_after_a_replacement() -> None:
    g = fl.Flow(lin()).tag("a").through(lin()).tag("b").build()
    g.enable_profiling()
    g(x64())
    g.Linear_1 = lin(D, 2)
    out = g(x64())
    profile = g.profile()
    assert profile is not None
    assert out.shape == (5, 2)
    assert [node.id for node in profile.nodes] == ["Linear_0", "Linear_1"]
    tagged = g.tagged("b")
    assert tagged is not None
    assert tagged.shape == (5, 2)


def replaced_everywhere(
    graph: nn.Module, kind: type, make: Callable[[nn.Module], nn.Module]
) -> int:
    """Replace every `kind` module below `graph` by ``make(old)``, as conversion loops do."""
    swapped = 0
    for module in list(graph.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, kind):
                setattr(module, child_name, make(child))
                swapped += 1
    return swapped


def test_a_named_modules_loop_swaps_activations_everywhere() -> None:
    g = (
        fl.Flow(lin())
        .through(nn.ReLU())
        .loop(nn.Sequential(lin(), nn.ReLU()))
        .for_(2)
        .gate(fl.SoftmaxRouter(D, 2), nn.ReLU(), lin())
        .through(fl.Flow(nn.ReLU()).label("inner").build())
        .build()
        .double()
    )
    assert replaced_everywhere(g, nn.ReLU, lambda _: nn.GELU()) == 4

    def oracle(x: Tensor) -> Tensor:
        gelu = nn.functional.gelu
        h = gelu(g.Linear_0(x))
        for _ in range(2):
            h = gelu(g.loop_0.body[0](h))
        w = g.gate_0.router(h)
        h = w[:, :1] * gelu(h) + w[:, 1:] * g.gate_0.experts[1](h)
        return gelu(h)

    assert_same_as_oracle(g, oracle, x64())
