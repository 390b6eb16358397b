"""Property tests: random nestings of loops, gates, switches and maps equal an independent
interpreter that runs every sample alone, in outputs and in gradients; invalid nestings
raise `fl.BuildError` and nothing else.

Every construct here treats rows independently (the leaves are element-wise, routers
and halts look at one row), so the interpreter may run each sample on its own: that
is the meaning of per-sample routing and halting.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

import flowdl as fl
from tests.support import assert_same_as_oracle

DIM, BATCH = 4, 5


class Affine(nn.Module):
    """``a * x + b`` with scalar parameters: works at any width."""

    def __init__(self, a: float, b: float) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.tensor(a, dtype=torch.float64))
        self.b = nn.Parameter(torch.tensor(b, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return self.a * x + self.b


class RowRouter(nn.Module):
    """Weights from each row's mean: softmax, or top-k (sparse) of ``w * mean + b``."""

    def __init__(self, n: int, k: int, seed: int) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.w = nn.Parameter(torch.randn(n, generator=gen, dtype=torch.float64))
        self.b = nn.Parameter(torch.randn(n, generator=gen, dtype=torch.float64))
        self.k = k
        self.sparse = k > 0

    def forward(self, x: Tensor) -> Tensor:
        logits = x.mean(-1, keepdim=True) * self.w + self.b
        if not self.k:
            return torch.softmax(logits, -1)
        top, index = logits.topk(self.k, -1)
        return torch.zeros_like(logits).scatter(-1, index, torch.softmax(top, -1))


class RowSelector(nn.Module):
    """A branch per row from its sum: ``floor(3 * sum) mod n``, shape ``[B]``."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.n = n

    def forward(self, x: Tensor) -> Tensor:
        return torch.remainder(torch.floor(3 * x.sum(-1)), self.n).long()


def norm_above(limit: float) -> Any:
    return lambda s: s.norm(dim=-1) - limit


# A spec is a tuple tree; `realise` turns it into modules, shared by graph and interpreter.
leaf = st.one_of(
    st.tuples(st.just("affine"), st.floats(0.5, 1.2), st.floats(-0.5, 0.5)),
    st.just(("tanh",)),
)


def extend(inner: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.tuples(st.just("chain"), st.lists(inner, min_size=1, max_size=3)),
        st.tuples(st.just("for"), st.integers(1, 3), inner),
        st.tuples(
            st.sampled_from(["while", "until"]), st.integers(1, 4), inner, st.floats(0.5, 3.0)
        ),
        st.tuples(
            st.just("gate"),
            st.integers(0, 2),
            st.lists(inner, min_size=2, max_size=3),
            st.integers(0, 1000),
        ),
        st.tuples(st.just("switch"), st.lists(inner, min_size=2, max_size=3)),
        st.tuples(st.just("map"), st.sampled_from([0, 1, 2, 4]), st.booleans(), inner),
        # invalid uses: each must raise a BuildError
        st.tuples(st.just("bad"), st.sampled_from(["for_0", "one_expert", "open", "max_iter_0"])),
    )


specs = st.recursive(leaf, extend, max_leaves=8)


def realise(spec: Any) -> Any:
    kind = spec[0]
    if kind == "affine":
        return ("affine", Affine(spec[1], spec[2]))
    if kind == "tanh":
        return ("tanh", nn.Tanh())
    if kind == "chain":
        return ("chain", [realise(s) for s in spec[1]])
    if kind == "for":
        return ("for", spec[1], realise(spec[2]))
    if kind in ("while", "until"):
        return (kind, spec[1], realise(spec[2]), norm_above(spec[3]))
    if kind == "gate":
        experts = [realise(s) for s in spec[2]]
        k = min(spec[1], len(experts))
        return ("gate", RowRouter(len(experts), k, spec[3]), experts)
    if kind == "switch":
        branches = [realise(s) for s in spec[1]]
        return ("switch", RowSelector(len(branches)), branches)
    if kind == "map":
        return ("map", spec[1], spec[2], realise(spec[3]))
    return spec  # ("bad", what)


class Invalid(Exception):
    """The spec holds a misuse the builder must reject."""


def contains_bad(node: Any) -> bool:
    if node[0] == "bad":
        return True
    return any(
        contains_bad(c)
        for part in node[1:]
        for c in (part if isinstance(part, list) else [part])
        if isinstance(c, tuple)
    )


# ------------------------------------------------------------ the builder side


def as_node(node: Any) -> Any:
    """A realised spec as something `through` / a body accepts."""
    kind = node[0]
    if kind in ("affine", "tanh"):
        return node[1]
    return add(fl.Flow(nn.Identity()), node)  # a nested (unbuilt) flow


def add(flow: fl.Flow, node: Any) -> fl.Flow:
    kind = node[0]
    if kind in ("affine", "tanh"):
        return flow.through(node[1])
    if kind == "chain":
        for child in node[1]:
            flow = add(flow, child)
        return flow
    if kind == "for":
        return flow.loop(as_node(node[2])).for_(node[1])
    if kind in ("while", "until"):
        method = "while_" if kind == "while" else "until"
        return getattr(flow.loop(as_node(node[2])), method)(node[3], node[1])
    if kind == "gate":
        return flow.gate(node[1], *[as_node(e) for e in node[2]])
    if kind == "switch":
        return flow.switch(node[1], *[as_node(b) for b in node[2]])
    if kind == "map":
        builder = flow.map(as_node(node[3]))
        if node[2]:
            builder = builder.batched()
        return builder.each() if node[1] == 0 else builder.slices(node[1])
    what = node[1]
    if what == "for_0":
        return flow.loop(nn.Identity()).for_(0)
    if what == "one_expert":
        return flow.gate(RowRouter(1, 0, 0), nn.Identity())
    if what == "max_iter_0":
        return flow.loop(nn.Identity()).until(norm_above(1.0), 0)
    flow.loop(nn.Identity())  # never finished
    return flow


# ------------------------------------------------------ the interpreter side


def run_row(node: Any, row: Tensor) -> Tensor:
    """Apply a realised spec to one sample ``[1, D]``, with plain Python control flow."""
    kind = node[0]
    if kind in ("affine", "tanh"):
        out: Tensor = node[1](row)
        return out
    if kind == "chain":
        for child in node[1]:
            row = run_row(child, row)
        return row
    if kind == "for":
        for _ in range(node[1]):
            row = run_row(node[2], row)
        return row
    if kind in ("while", "until"):
        max_iter, body, cond = node[1], node[2], node[3]
        for i in range(max_iter):
            if kind == "while" and float(cond(row).detach()) > 0:
                break
            row = run_row(body, row)
            if kind == "until" and i + 1 < max_iter and float(cond(row).detach()) > 0:
                break
        return row
    if kind == "gate":
        weights = node[1](row)
        total = torch.zeros(())
        for i, expert in enumerate(node[2]):
            if float(weights[0, i].detach()) != 0:
                total = total + weights[:, i : i + 1] * run_row(expert, row)
        return total
    if kind == "switch":
        return run_row(node[2][int(node[1](row))], row)
    if kind == "map":
        n = max(node[1], 1)
        pieces = row.reshape(n, -1)
        return torch.cat([run_row(node[3], pieces[j : j + 1]) for j in range(n)], -1)
    raise Invalid(node[1])


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(spec=specs, seed=st.integers(0, 2**16))
def test_random_nestings_equal_running_each_sample_alone(spec: Any, seed: int) -> None:
    torch.manual_seed(seed)
    node = realise(spec)
    event(f"root: {node[0]}")
    if contains_bad(node):
        event("invalid")
        try:
            add(fl.Flow(nn.Identity()), node).build()
        except fl.BuildError:
            return
        raise AssertionError(f"{spec} should not build")
    graph = add(fl.Flow(nn.Identity()), node).build()
    x = torch.randn(BATCH, DIM, dtype=torch.float64, requires_grad=True)

    def oracle(x: Tensor) -> Tensor:
        return torch.cat([run_row(node, x[i : i + 1]) for i in range(BATCH)])

    try:
        oracle(x)
    except RuntimeError:  # nested slices that do not divide the width: fails at run time
        event("fails at run time")
        with pytest.raises(fl.GraphError, match="not divisible"):
            graph(x)
        return
    params = list(graph.parameters())
    if not params:
        torch.testing.assert_close(graph(x), oracle(x), rtol=0, atol=1e-12)
        return
    assert_same_as_oracle(graph, oracle, x, params=params, none_is_zero=True)
