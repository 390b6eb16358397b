"""The fuzzer's interpreter agrees with hand-written torch on fixed descriptions.

Each test writes the maths out (weights drawn from the same seeds by
`leaves.leaf_weights` / `projection_weights` / `init_weight`) and compares it with
`Interpreter`, outputs and gradients, call after call.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn.functional import linear

from flowdl._fuzz.interpret import Interpreter
from flowdl._fuzz.ir import (
    AuxInput,
    CallSpec,
    Description,
    Fork,
    Gate,
    GraphSpec,
    Halt,
    Init,
    Leaf,
    Loop,
    Map,
    Merge,
    Router,
    Selector,
    Split,
    Switch,
    Tag,
    Through,
)
from flowdl._fuzz.leaves import init_weight, leaf_weights, projection_weights

D = 3


def close(a: Tensor, b: Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def weights(kind: str, seed: int, arity: int = 0, din: int = D) -> dict[str, Tensor]:
    return leaf_weights(kind, seed, din, D, arity)


def tanh_leaf(seed: int, x: Tensor) -> Tensor:
    w = weights("tanh", seed)
    return torch.tanh(x @ w["weight"].T + w["bias"])


def lin_leaf(seed: int, x: Tensor) -> Tensor:
    w = weights("linear", seed)
    return x @ w["weight"].T + w["bias"]


def describe(graph: GraphSpec, *calls: CallSpec) -> Description:
    return Description(0, "fixed", graph, calls or (CallSpec(4),))


def inputs(b: int = 4, seed: int = 1) -> Tensor:
    return torch.randn(b, D, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def test_state_carries_across_calls_starts_from_its_init_and_resets() -> None:
    graph = GraphSpec(
        "top",
        D,
        Leaf("tanh", 10, D, D),
        steps=(Through(Leaf("stateadd", 0, D, D, 1), ("h",)), Tag("h", Init("vector", 20))),
    )
    interp = Interpreter(describe(graph))
    h0 = init_weight("vector", 20, D)
    xs = [inputs(seed=s) for s in range(3)]
    y0 = interp.call(xs[0], []).output
    close(y0, tanh_leaf(10, xs[0]) + h0)
    y1 = interp.call(xs[1], []).output
    close(y1, tanh_leaf(10, xs[1]) + y0.detach())
    assert not interp.state[("top", "h")].requires_grad  # cut between calls
    interp.reset()
    y2 = interp.call(xs[2], []).output
    close(y2, tanh_leaf(10, xs[2]) + h0)
    (grad,) = torch.autograd.grad(y2.sum(), [interp.params["20.init"]])
    close(grad, torch.full((D,), 4.0, dtype=torch.float64))  # 4 rows read the init


def test_per_sample_while_runs_each_sample_alone() -> None:
    halt = Halt("rowsum", 0, 0.3)
    graph = GraphSpec(
        "top", D, Leaf("linear", 1, D, D), steps=(Loop(Leaf("tanh", 2, D, D), "while", 3, halt),)
    )
    interp = Interpreter(describe(graph))
    x = inputs(6, seed=4).requires_grad_(True)
    outcome = interp.call(x, [])
    rows, counts = [], []
    for row in lin_leaf(1, x):
        s, n = row[None], 0
        for _ in range(3):
            if s.sum() - 0.3 > 0:
                break
            s, n = tanh_leaf(2, s), n + 1
        rows.append(s)
        counts.append(n)
    close(outcome.output, torch.cat(rows))
    assert len(set(counts)) > 1  # the samples really halt apart
    got = torch.autograd.grad(outcome.output.sum(), x)[0]
    want = torch.autograd.grad(torch.cat(rows).sum(), x)[0]
    close(got, want)


def test_until_and_batch_halting_and_iterations_of_a_tagged_loop() -> None:
    halt = Halt("mean", 0, 0.2)
    body = Leaf("linear", 3, D, D)
    graph = GraphSpec(
        "top", D, Leaf("sin", 0, D, D), steps=(Loop(body, "until", 4, halt), Tag("loop"))
    )
    x = inputs(seed=5)
    outcome = Interpreter(describe(graph)).call(x, [])
    s, n = torch.sin(x), 0
    for _ in range(4):
        s, n = lin_leaf(3, s), n + 1
        if s.mean() - 0.2 > 0:
            break
    close(outcome.output, s)
    assert outcome.iterations["loop"].tolist() == [n] * 4


def test_sparse_gate_keeps_the_top_k_probabilities_renormalised_from_k_2() -> None:
    experts = (Leaf("linear", 5, D, D), Leaf("tanh", 6, D, D), Leaf("linear", 7, D, D))
    for k, renormalize in [(1, None), (2, None), (2, False), (3, True)]:
        gate = Gate(Router("topk", 9, 3, k, renormalize), experts)
        graph = GraphSpec("top", D, Leaf("sin", 0, D, D), steps=(gate,))
        x = inputs(seed=k)
        out = Interpreter(describe(graph)).call(x, []).output
        s = torch.sin(x)
        w, b = projection_weights(9, D, 3)
        logits = s @ w.T + b
        p = torch.softmax(logits, -1)
        keep = torch.zeros_like(p).scatter(-1, logits.topk(k, -1).indices, 1.0)
        weight = p * keep
        if renormalize or (renormalize is None and k > 1):
            weight = weight / weight.sum(-1, keepdim=True)
        outs = [lin_leaf(5, s), tanh_leaf(6, s), lin_leaf(7, s)]
        close(out, sum(weight[:, i : i + 1] * outs[i] for i in range(3)))


def test_switch_per_sample_and_for_the_batch() -> None:
    branches = (Leaf("linear", 5, D, D), Leaf("tanh", 6, D, D))
    x = inputs(8, seed=2)
    rows = Switch(Selector("rows", 0, 2), branches)
    out = Interpreter(describe(GraphSpec("top", D, Leaf("sin", 0, D, D), steps=(rows,)))).call(
        x, []
    )
    s = torch.sin(x)
    pick = (torch.sigmoid(3 * s.sum(-1)) * 2).floor().clamp(max=1).long()
    assert set(pick.tolist()) == {0, 1}
    close(out.output, torch.where(pick[:, None] == 1, tanh_leaf(6, s), lin_leaf(5, s)))
    batch = Switch(Selector("batch", 0, 2), branches)
    graph = GraphSpec("top", D, Leaf("sin", 0, D, D), steps=(batch,))
    out = Interpreter(describe(graph)).call(x, []).output
    close(out, tanh_leaf(6, s) if s.mean() > 0 else lin_leaf(5, s))


def test_maps_over_rows_slices_and_a_tag() -> None:
    x = inputs(seed=3)
    body = Leaf("tanh", 4, D, D)
    graph = GraphSpec("top", D, Leaf("sin", 0, D, D), steps=(Map(body, "each"),))
    close(Interpreter(describe(graph)).call(x, []).output, tanh_leaf(4, torch.sin(x)))
    piece = Leaf("linear", 8, 1, 1)
    graph = GraphSpec("top", D, Leaf("sin", 0, D, D), steps=(Map(piece, "slices", D),))
    w = leaf_weights("linear", 8, 1, 1, 0)
    s = torch.sin(x)
    close(Interpreter(describe(graph)).call(x, []).output, s * w["weight"][0, 0] + w["bias"])
    steps = (Tag("t"), Through(Leaf("linear", 9, D, D)), Map(body, "over", tag="t"))
    graph = GraphSpec("top", D, Leaf("sin", 0, D, D), steps=steps)
    close(Interpreter(describe(graph)).call(x, []).output, tanh_leaf(4, s))


def test_split_groups_forks_and_a_nested_graph_with_an_input() -> None:
    nested = GraphSpec(
        "n2",
        D,
        Leaf("tanh", 12, D, D),
        inputs=(),
        steps=(),
    )
    with_input = GraphSpec(
        "n3",
        D,
        Leaf("tanh", 13, D, D),
        inputs=(AuxInput("q"),),
        steps=(Through(Leaf("stateadd", 0, D, D, 1), ("q",)),),
    )
    split = Split(
        (Leaf("linear", 14, D, D), nested), Merge("cat", Leaf("linear", 15, 2 * D, D)), group="g"
    )
    steps = (
        Tag("a"),
        Fork(Leaf("tanh", 16, D, D), "f"),
        split,
        Through(with_input, ("g_1",)),
        Through(Leaf("stateadd", 0, D, D, 2), ("f", "a")),
    )
    graph = GraphSpec("top", D, Leaf("sin", 0, D, D), steps=steps)
    x = inputs(seed=6)
    outcome = Interpreter(describe(graph)).call(x, [])
    a = torch.sin(x)
    f = tanh_leaf(16, a)
    g0, g1 = lin_leaf(14, a), tanh_leaf(12, a)
    w = leaf_weights("linear", 15, 2 * D, D, 0)
    merged = linear(torch.cat([g0, g1], -1), w["weight"], w["bias"])
    y = tanh_leaf(13, merged) + g1
    close(outcome.output, y + f + a)
    close(outcome.tags["g_1"], g1)
    assert outcome.ran == {"n2", "n3"}


def test_a_stateful_body_keeps_the_state_of_a_sample_that_did_not_run() -> None:
    cell = GraphSpec(
        "cell",
        D,
        Leaf("linear", 21, D, D),
        steps=(Through(Leaf("tanh", 22, D, D, 1), ("h",)), Tag("h", Init("row", 23))),
    )
    loop = Loop(cell, "while", 2, Halt("rowsum", 0, 0.0))
    graph = GraphSpec("top", D, Leaf("sin", 0, D, D), steps=(loop,))
    interp = Interpreter(describe(graph, CallSpec(5), CallSpec(5)))
    w = weights("tanh", 22, arity=1)
    h0 = init_weight("row", 23, D)
    state = [h0.clone() for _ in range(5)]
    for call in range(2):
        x = inputs(5, seed=10 + call)
        rows = []
        for i, row in enumerate(torch.sin(x)):
            s = row[None]
            for _ in range(2):
                if s.sum() > 0:
                    break
                h = torch.tanh(lin_leaf(21, s) @ w["weight"].T + w["bias"]) + w["mix"][0] * state[i]
                state[i] = s = h
            rows.append(s)
        close(interp.call(x, []).output, torch.cat(rows))


def test_a_per_sample_loop_cuts_per_sample_refs_and_passes_shared_ones_whole() -> None:
    inputs_ = (AuxInput("p", "batched", per_sample=True), AuxInput("s", "vector"))
    halt = Halt("rowsum", 0, 0.3)
    steps = (
        Fork(Leaf("batchmean", 0, D, D), "m", shared=True),
        Loop(Leaf("tanh", 2, D, D, 3), "while", 3, halt, ("p", "s", "m")),
    )
    graph = GraphSpec("top", D, Leaf("sin", 0, D, D), inputs_, steps)
    x, p, s = inputs(5, seed=7), inputs(5, seed=8), inputs(1, seed=9)[0]
    out = Interpreter(describe(graph)).call(x, [p, s]).output
    w = weights("tanh", 2, arity=3)
    stream = torch.sin(x)
    m = stream.mean(0)
    rows = []
    for i, row in enumerate(stream):
        state = row[None]
        for _ in range(3):
            if state.sum() - 0.3 > 0:
                break
            core = torch.tanh(state @ w["weight"].T + w["bias"])
            state = core + w["mix"][0] * p[i : i + 1] + w["mix"][1] * s + w["mix"][2] * m
        rows.append(state)
    close(out, torch.cat(rows))
