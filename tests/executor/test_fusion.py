"""Horizontal fusion in fast mode: identical branches and experts run as one batched chain.

Every fused graph is checked against the same graph run eagerly (unfused), in float64:
outputs, gradients, and the parameters after Adam steps; graphs whose parts differ, or
whose modules carry hooks, must run the construct's own loop.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
from torch import Tensor, nn
from torch.nn.modules import module as module_hooks

import flowdl as fl
from flowdl._control.gate import Gate
from flowdl._control.switch import Switch
from flowdl._executor.fast import FusedParts
from flowdl._executor.fusion import StackedChains, chain_of

D = 6


def mlp(hidden: int = 5) -> nn.Sequential:
    return nn.Sequential(nn.Linear(D, hidden), nn.GELU(), nn.Linear(hidden, D))


def mlp_graph() -> fl.Graph:
    return fl.Flow(nn.Linear(D, 5)).through(nn.Tanh()).through(nn.Linear(5, D)).build()


def switch_graph(parts: list[nn.Module]) -> fl.Graph:
    select = fl.ArgmaxSelector(D, len(parts))
    return fl.Flow(nn.Linear(D, D)).switch(select, *parts).through(nn.Linear(D, D)).build()


def gate_graph(parts: list[nn.Module], k: int = 2) -> fl.Graph:
    router = fl.TopKRouter(D, len(parts), k=k)
    return fl.Flow(nn.Linear(D, D)).gate(router, *parts).through(nn.Linear(D, D)).build()


def fused_items(g: fl.Graph) -> list[FusedParts]:
    return [item.fn for item in g._fast or () if isinstance(getattr(item, "fn", None), FusedParts)]


def train(g: fl.Graph, batches: list[Tensor], steps: int = 3) -> list[Tensor]:
    """Outputs of `steps` Adam steps (loss: sum of squares)."""
    opt = torch.optim.Adam(g.parameters(), lr=0.05)
    outs = []
    for x in batches[:steps]:
        out = g(x)
        opt.zero_grad(set_to_none=True)
        out.pow(2).sum().backward()
        opt.step()
        outs.append(out.detach())
    return outs


def assert_fused_equals_eager(build: Callable[[], fl.Graph], fused: bool = True) -> None:
    torch.manual_seed(0)
    eager = build().double()
    fast = copy.deepcopy(eager)
    fast.compile(backend="eager")
    assert bool(fused_items(fast)) == fused
    batches = [torch.randn(17, D, dtype=torch.float64) for _ in range(3)]
    for x in batches[:1]:  # one call: outputs and gradients
        a, b = eager(x), fast(x)
        torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
        a.pow(2).sum().backward()
        b.pow(2).sum().backward()
        for (name, p), q in zip(eager.named_parameters(), fast.parameters(), strict=True):
            assert (p.grad is None) == (q.grad is None), name
            if p.grad is not None:
                torch.testing.assert_close(q.grad, p.grad, rtol=1e-12, atol=1e-12, msg=name)
        eager.zero_grad(set_to_none=True)
        fast.zero_grad(set_to_none=True)
    for a, b in zip(train(eager, batches), train(fast, batches), strict=True):  # optimizer steps
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)
    for p, q in zip(eager.parameters(), fast.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=1e-10, atol=1e-10)
    assert eager.state_dict().keys() == fast.state_dict().keys()


@pytest.mark.parametrize("part", [mlp, mlp_graph], ids=["sequential", "nested graph"])
def test_switch_branches_fused_equal_the_unfused_graph(part: Callable[[], nn.Module]) -> None:
    assert_fused_equals_eager(lambda: switch_graph([part() for _ in range(4)]))


@pytest.mark.parametrize("part", [mlp, mlp_graph], ids=["sequential", "nested graph"])
@pytest.mark.parametrize("k", [1, 2])
def test_sparse_gate_experts_fused_equal_the_unfused_graph(
    part: Callable[[], nn.Module], k: int
) -> None:
    assert_fused_equals_eager(lambda: gate_graph([part() for _ in range(5)], k=k))


def test_different_branches_are_not_fused_and_run_as_before() -> None:
    assert_fused_equals_eager(lambda: switch_graph([mlp(), mlp(), mlp(hidden=4)]), fused=False)
    assert_fused_equals_eager(
        lambda: gate_graph([mlp(), nn.Sequential(nn.Linear(D, D), nn.LayerNorm(D))]), fused=False
    )


def test_an_unused_branch_keeps_no_gradient() -> None:
    torch.manual_seed(3)
    g = switch_graph([mlp() for _ in range(3)]).double()
    g.compile(backend="eager")
    select = next(m for m in g.modules() if isinstance(m, fl.ArgmaxSelector))
    with torch.no_grad():  # branch 2 is never the argmax
        select.proj.weight.zero_()
        select.proj.bias.copy_(torch.tensor([0.0, 0.0, -1.0], dtype=torch.float64))
        select.proj.weight[1, 0] = 1.0
    x = torch.randn(9, D, dtype=torch.float64)
    x[:2, 0] = torch.tensor([1.0, -1.0])  # branches 0 and 1 both chosen
    assert fused_items(g)
    g(x).sum().backward()
    switch = next(m for m in g.modules() if isinstance(m, Switch))
    used, unused = switch.branches[0], switch.branches[2]
    assert isinstance(used, nn.Module)
    assert isinstance(unused, nn.Module)
    assert all(p.grad is not None for p in used.parameters())
    assert all(p.grad is None for p in unused.parameters())  # as unfused: Adam skips it


def test_hooks_turn_fusion_off_for_the_call() -> None:
    torch.manual_seed(1)
    parts = [mlp() for _ in range(3)]
    g = gate_graph(parts)
    g.compile(backend="eager")
    (item,) = fused_items(g)
    x = torch.randn(8, D)
    assert item.stacked.accepts(x)
    seen = []
    handle = parts[1][2].register_forward_hook(lambda *_: seen.append(1))
    assert not item.stacked.accepts(x)
    g(x)
    assert seen  # the expert ran as a module, so its hook ran
    handle.remove()
    assert item.stacked.accepts(x)


def test_chain_of_reads_modules_sequentials_and_straight_graphs() -> None:
    assert chain_of(mlp_graph()) is not None
    assert chain_of(nn.Sequential(mlp(), nn.ReLU())) is not None
    branchy = fl.Flow(nn.Linear(D, D)).also(nn.Linear(D, D)).build()  # a residual
    assert chain_of(branchy) is None
    tagged = fl.Flow(nn.Linear(D, D)).tag("h").through(nn.ReLU()).build()
    assert chain_of(tagged) is None
    assert StackedChains.of([mlp()]) is None  # one part: nothing to fuse
    shared = mlp()
    assert StackedChains.of([shared, shared]) is None


def test_a_layer_replaced_inside_a_sequential_is_seen() -> None:
    torch.manual_seed(4)
    parts = [mlp() for _ in range(3)]
    g = gate_graph(parts).double()
    g.compile(backend="eager")
    (item,) = fused_items(g)
    x = torch.randn(8, D, dtype=torch.float64)
    parts[1][2] = nn.Linear(5, D).double()  # unseen by the graph: nn.Sequential's own slot
    assert not item.stacked.accepts(x)
    eager = copy.deepcopy(g)  # copies run eagerly, with the same modules
    torch.testing.assert_close(g(x), eager(x), rtol=0, atol=0)


def test_a_stream_of_the_wrong_width_fails_as_unfused() -> None:
    torch.manual_seed(5)
    g = fl.Flow(nn.Identity()).gate(fl.TopKRouter(D + 1, 3, k=2), *[mlp() for _ in range(3)])
    graph = g.build()
    graph.compile(backend="eager")
    with pytest.raises(fl.GraphError, match="expert 0"):
        graph(torch.randn(4, D + 1))


def assert_matches_an_eager_copy(g: fl.Graph, change: Callable[[fl.Graph], None]) -> None:
    """`change` applied to compiled `g` and to an eager copy: same outputs and gradients."""
    eager = copy.deepcopy(g)  # copies run eagerly, with their own copies of the modules
    assert fused_items(g)
    assert not fused_items(eager)
    change(g)
    change(eager)
    x = torch.randn(17, D, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    a, b = eager(xa), g(xb)
    torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    a.pow(2).sum().backward()
    b.pow(2).sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-12, atol=1e-12)
    for (name, p), q in zip(eager.named_parameters(), g.parameters(), strict=True):
        assert (p.grad is None) == (q.grad is None), name
        if p.grad is not None:
            torch.testing.assert_close(q.grad, p.grad, rtol=1e-12, atol=1e-12, msg=name)


def parts_of(g: fl.Graph) -> list[nn.Sequential]:
    construct = next(m for m in g.modules() if isinstance(m, (Switch, Gate)))
    parts = construct.branches if isinstance(construct, Switch) else construct.experts
    return [p for p in parts if isinstance(p, nn.Sequential)]


def append_tanh(seq: nn.Sequential) -> None:
    seq.append(nn.Tanh())


def iadd_tanh(seq: nn.Sequential) -> None:
    seq += nn.Sequential(nn.Tanh())


def add_module_tanh(seq: nn.Sequential) -> None:
    seq.add_module("extra", nn.Tanh())


@pytest.mark.parametrize("grow", [append_tanh, iadd_tanh, add_module_tanh])
@pytest.mark.parametrize("graph", [switch_graph, gate_graph], ids=["switch", "gate"])
def test_a_layer_added_to_every_sequential_after_compile_is_seen(
    grow: Callable[[nn.Sequential], None], graph: Callable[[list[nn.Module]], fl.Graph]
) -> None:
    torch.manual_seed(6)
    g = graph([mlp() for _ in range(3)]).double()
    g.compile(backend="eager")

    def change(h: fl.Graph) -> None:
        for seq in parts_of(h):
            grow(seq)

    assert_matches_an_eager_copy(g, change)


def remove_a_bias(h: fl.Graph) -> None:
    parts_of(h)[1][2].bias = None


def add_a_bias(h: fl.Graph) -> None:
    parts_of(h)[1][2].bias = nn.Parameter(torch.linspace(-1, 1, D, dtype=torch.float64))


def replace_a_weight(h: fl.Graph) -> None:  # same shape, another dtype: as unfused
    linear = parts_of(h)[1][0]
    linear.weight = nn.Parameter(linear.weight.detach().float())


@pytest.mark.parametrize("graph", [switch_graph, gate_graph], ids=["switch", "gate"])
def test_a_bias_removed_or_added_after_compile_is_seen(
    graph: Callable[[list[nn.Module]], fl.Graph],
) -> None:
    torch.manual_seed(7)
    g = graph([mlp() for _ in range(3)]).double()
    g.compile(backend="eager")
    assert_matches_an_eager_copy(g, remove_a_bias)
    torch.manual_seed(8)
    parts = [mlp() for _ in range(3)]
    for seq in parts:
        seq[2].bias = None
    g = graph(parts).double()
    g.compile(backend="eager")
    assert_matches_an_eager_copy(g, add_a_bias)


def test_a_weight_of_another_dtype_fails_as_unfused() -> None:
    torch.manual_seed(9)
    g = gate_graph([mlp() for _ in range(3)]).double()
    g.compile(backend="eager")
    replace_a_weight(g)
    with pytest.raises(fl.GraphError, match="expert 1"):
        g(torch.randn(17, D, dtype=torch.float64))


def double_input_grads(_m: nn.Module, grads: tuple[Tensor | None, ...], _out: object) -> object:
    return tuple(None if t is None else 2 * t for t in grads)


def triple_output_grads(_m: nn.Module, grads: tuple[Tensor | None, ...]) -> object:
    return tuple(None if t is None else 3 * t for t in grads)


@pytest.mark.parametrize("graph", [switch_graph, gate_graph], ids=["switch", "gate"])
def test_backward_hooks_on_the_construct_run_as_unfused(
    graph: Callable[[list[nn.Module]], fl.Graph],
) -> None:
    torch.manual_seed(10)
    g = graph([mlp() for _ in range(3)]).double()
    g.compile(backend="eager")
    calls: dict[str, list[int]] = {"fast": [], "eager": []}

    def change(h: fl.Graph) -> None:
        seen = calls["eager" if not fused_items(h) else "fast"]
        construct = next(m for m in h.modules() if isinstance(m, (Switch, Gate)))
        construct.register_full_backward_hook(lambda *_: seen.append(1))
        construct.register_full_backward_hook(double_input_grads)
        construct.register_full_backward_pre_hook(triple_output_grads)

    assert_matches_an_eager_copy(g, change)
    assert calls["fast"] == calls["eager"] == [1]


@pytest.mark.parametrize("graph", [switch_graph, gate_graph], ids=["switch", "gate"])
def test_global_module_hooks_see_the_construct_as_unfused(
    graph: Callable[[list[nn.Module]], fl.Graph],
) -> None:
    torch.manual_seed(11)
    g = graph([mlp() for _ in range(3)]).double()
    g.compile(backend="eager")
    eager = copy.deepcopy(g)
    (item,) = fused_items(g)
    x = torch.randn(17, D, dtype=torch.float64)
    seen: list[str] = []
    handles = [
        module_hooks.register_module_forward_pre_hook(lambda m, _: seen.append(type(m).__name__)),
        module_hooks.register_module_forward_hook(lambda m, *_: seen.append(type(m).__name__)),
    ]
    try:
        counts = []
        for h in (eager, g):
            seen.clear()
            h(x)
            counts.append(sorted(seen))
    finally:
        for handle in handles:
            handle.remove()
    assert counts[0] == counts[1]
    assert counts[1].count(type(item.construct).__name__) == 2
    # A global backward hook (which compiled segments reject): the fused step alone.
    handle = module_hooks.register_module_full_backward_hook(
        lambda m, *_: seen.append(f"back {type(m).__name__}")
    )
    try:
        seen.clear()
        item(x.clone().requires_grad_()).sum().backward()
    finally:
        handle.remove()
    assert f"back {type(item.construct).__name__}" in seen


def tanh_gelu(h: fl.Graph) -> None:
    parts_of(h)[1][1].approximate = "tanh"


def test_an_activation_setting_changed_after_compile_is_seen() -> None:
    torch.manual_seed(12)
    g = gate_graph([mlp() for _ in range(3)]).double()
    g.compile(backend="eager")
    assert_matches_an_eager_copy(g, tanh_gelu)
