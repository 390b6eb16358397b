"""Random graphs for the property tests: specs drawn by hypothesis, the modules they
stand for, how to build them with `fl.Flow`, and an independent interpreter.

Two families:

- *nestings* (`specs`): trees of loops, gates, switches and maps over element-wise
  leaves; `realise` makes the modules, `add` builds them, `run_row` interprets one
  sample with plain Python control flow, and `contains_bad` says whether a spec holds
  a misuse the builder must reject.
- *chains* (`chain_steps`, `structured_chains`): sequences of builder calls (through,
  also, fork, split/merge, tags, references, inputs); `module_for` and `apply_flow`
  turn a step into modules and a builder call. Their interpreter is the oracle of
  ``tests/builder/test_properties.py``.
"""

from __future__ import annotations

from typing import Any

import torch
from hypothesis import strategies as st
from torch import Tensor, nn

import flowdl as fl
from tests.support import Mix

# ------------------------------------------------------------------ nestings

DIM, BATCH = 4, 5
"""The width and batch of the nestings' inputs."""


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


# ---------------------------------------------------- nestings: the builder side


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


# ------------------------------------------------ nestings: the interpreter side


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


# -------------------------------------------------------------------- chains

CHAIN_DIM, CHAIN_BATCH = 3, 2
"""The width and batch of the chains' inputs."""

NAMES = ["a", "b", "c", "a_0", "a_1"]

chain_steps = st.one_of(
    st.tuples(st.sampled_from(["through", "also", "fork"])),
    st.tuples(st.just("split"), st.integers(0, 3)),
    st.tuples(st.just("merge"), st.sampled_from(["add", "mean", "catfold"])),
    st.tuples(st.sampled_from(["tag", "tag_group", "using", "input"]), st.sampled_from(NAMES)),
    st.tuples(st.just("using"), st.sampled_from(NAMES), st.sampled_from(NAMES)),
)


@st.composite
def structured_chains(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    """Chains made of well-formed blocks, so most build; references may still point to
    tags defined earlier (this call), later (state), or never (an error at build)."""
    names = [f"t{i}" for i in range(8)]
    fresh = iter(names)
    steps: list[tuple[Any, ...]] = []
    for block in draw(st.lists(st.integers(0, 6), max_size=8)):
        if block == 0:
            steps.append((draw(st.sampled_from(["through", "also"])),))
        elif block == 1:
            steps += [("fork",), ("tag", next(fresh, "t0"))]
        elif block == 2:
            steps.append(("split", draw(st.integers(2, 3))))
            if draw(st.booleans()):
                steps.append(("tag_group", next(fresh, "t0")))
            if draw(st.booleans()):
                steps.append(("using", draw(st.sampled_from(names))))
            steps.append(("merge", draw(st.sampled_from(sorted(MERGES)))))
        elif block in (3, 4):
            steps.append(("tag", next(fresh, "t0")))
        elif block == 5:
            steps.append(("using", draw(st.sampled_from(names))))
        else:
            steps.append(("input", next(fresh, "t0")))
    return steps


class CatFold(nn.Module):
    """``fl.Cat`` of any number of ``[B, CHAIN_DIM]`` inputs, folded back to ``[B, CHAIN_DIM]``."""

    def forward(self, *xs: Tensor) -> Tensor:
        return fl.Cat(dim=-1)(*xs).unflatten(-1, (-1, CHAIN_DIM)).sum(-2)


MERGES: dict[str, type[nn.Module]] = {"add": fl.Add, "mean": fl.Mean, "catfold": CatFold}


def module_for(step: tuple[Any, ...]) -> Any:
    if step[0] in ("through", "also", "fork"):
        return Mix(CHAIN_DIM).double()
    if step[0] == "split":
        return [Mix(CHAIN_DIM).double() for _ in range(step[1])]
    if step[0] == "merge":
        return MERGES[step[1]]()
    return None


def apply_flow(flow: fl.Flow, step: tuple[Any, ...], module: Any) -> fl.Flow:
    kind = step[0]
    if kind in ("through", "also", "fork", "merge"):
        return getattr(flow, kind)(module)  # type: ignore[no-any-return]
    if kind == "split":
        return flow.split(*module)
    return getattr(flow, kind)(*step[1:])  # type: ignore[no-any-return]
