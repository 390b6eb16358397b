"""A registry of every kind of node a graph can hold, each with a hand-written oracle.

After PyTorch's ``ModuleInfo``: one `NodeKind` per builder construct and built-in
node, and ``tests/test_node_contracts.py`` runs the same contract over all of them
(oracle values and gradients, gradcheck, checkpoints, descriptions, copies, fast
mode, replacement). A new construct or built-in node gets an entry here, and with it
every check.

An entry builds a fresh `Case` from a seed: the graph, an oracle written in plain
PyTorch over the *same* modules (so parameter gradients compare on the same
tensors), and float64 inputs. Everything is a module (no lambdas) so that graphs
pickle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

import flowdl as fl

D, B = 4, 3
"""Feature width and batch size of every case."""


@dataclass
class Case:
    """One built graph of a node kind, with its oracle.

    Attributes:
        graph: the flowdl graph.
        oracle: a hand-written function of the same modules, computing the same thing.
        inputs: float64 inputs requiring grad, in call order.
        calls: how many calls to compare (2 for graphs carrying state across calls).
        sparse: gradients may be missing on one side where the other has zeros (a
            module that did not run for a sample, or a decision without gradient).
        stateful: the graph carries state from one call to the next.
    """

    graph: fl.Graph
    oracle: Callable[..., Tensor]
    inputs: tuple[Tensor, ...]
    calls: int = 1
    sparse: bool = False
    stateful: bool = False


@dataclass(frozen=True)
class NodeKind:
    """A kind of node: its name, what it covers, and how to build a case of it."""

    name: str
    build: Callable[[], Case]
    covers: tuple[str, ...] = field(default=())

    def case(self, seed: int = 0) -> Case:
        """A fresh case, its modules initialised from `seed`."""
        torch.manual_seed(seed)
        return self.build()


# ------------------------------------------------------------------ modules


def lin(n_in: int = D, n_out: int = D) -> nn.Linear:
    return nn.Linear(n_in, n_out).double()


class Pair(nn.Module):
    """A module of two inputs: ``Linear(cat(x, y))``."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = lin(2 * D, D)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        out: Tensor = self.proj(torch.cat([x, y], -1))
        return out


class Block(nn.Module):
    """``tanh(Linear(x))``: a loop body whose state stays bounded."""

    def __init__(self, n: int = D) -> None:
        super().__init__()
        self.proj = lin(n, n)

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.proj(x))


class Scale(nn.Module):
    """``w * x`` with a learned scalar: a loop body whose state grows (``w > 1``)."""

    def __init__(self, w: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float64))

    def forward(self, x: Tensor) -> Tensor:
        return self.w * x


def x64(*shape: int) -> Tensor:
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def rows(fn: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    """`fn` applied to each sample alone (``[1, ...]``), concatenated."""
    return torch.cat([fn(x[i : i + 1]) for i in range(x.shape[0])])


# -------------------------------------------------------------------- cases


def through() -> Case:
    a, c = lin(), lin()
    g = fl.Flow(a).through(nn.Tanh()).through(c).build()
    return Case(g, lambda x: c(torch.tanh(a(x))), (x64(B, D),))


def also() -> Case:
    a, r = lin(), lin()
    g = fl.Flow(a).also(r).build()

    def oracle(x: Tensor) -> Tensor:
        h = a(x)
        return h + r(h)

    return Case(g, oracle, (x64(B, D),))


def fork_using() -> Case:
    a, side, pair = lin(), lin(), Pair()
    g = fl.Flow(a).fork(side).tag("side").through(pair).using("side").build()

    def oracle(x: Tensor) -> Tensor:
        h = a(x)
        return pair(h, side(h))

    return Case(g, oracle, (x64(B, D),))


def split_merge(
    merge: Callable[[], nn.Module], combine: Callable[[Tensor, Tensor], Tensor]
) -> Callable[[], Case]:
    def build() -> Case:
        a, b1, b2 = lin(), lin(), lin()
        g = fl.Flow(a).split(b1, b2).tag_group("heads").merge(merge()).build()

        def oracle(x: Tensor) -> Tensor:
            h = a(x)
            return combine(b1(h), b2(h))

        return Case(g, oracle, (x64(B, D),))

    return build


def graph_input() -> Case:
    a, pair = lin(), Pair()
    g = fl.Flow(a).input("aux").through(pair).using("aux").build()
    return Case(g, lambda x, aux: pair(a(x), aux), (x64(B, D), x64(B, D)))


class StateOracle:
    """``out = a(x) + h``, ``h = out`` (detached) for the next call, from zeros."""

    def __init__(self, a: nn.Module) -> None:
        self.a = a
        self.h: Tensor | None = None

    def __call__(self, x: Tensor) -> Tensor:
        previous = torch.zeros_like(x) if self.h is None else self.h
        out: Tensor = self.a(x) + previous
        self.h = out.detach()
        return out


def forward_reference() -> Case:
    a = lin()
    g = fl.Flow(a).through(fl.StateAdd()).using("h").tag("h").build()
    return Case(g, StateOracle(a), (x64(B, D),), calls=2, stateful=True)


def nested_graph() -> Case:
    inner_lin, c = lin(), lin()
    inner = fl.Flow(inner_lin).through(nn.Tanh()).label("inner").build()
    g = fl.Flow(inner).through(c).build()
    return Case(g, lambda x: c(torch.tanh(inner_lin(x))), (x64(B, D),))


def loop_for() -> Case:
    a, body = lin(), Block()
    g = fl.Flow(a).loop(body).for_(3).build()

    def oracle(x: Tensor) -> Tensor:
        h = a(x)
        for _ in range(3):
            h = body(h)
        return h

    return Case(g, oracle, (x64(B, D),))


def loop_while_threshold() -> Case:
    # the state starts in (-1, 1) and grows by half each iteration: it halts after a few
    a, body, halt = Block(), Scale(1.5), fl.ThresholdHalt(2.0)
    g = fl.Flow(a).loop(body).while_(halt, 6).build()

    def oracle(x: Tensor) -> Tensor:
        h = a(x)
        for _ in range(6):
            if float(h.detach().max()) - 2.0 > 0:  # the whole batch halts
                break
            h = body(h)
        return h

    return Case(g, oracle, (x64(B, D),))


def loop_until_learned() -> Case:
    a, body, halt = lin(), Block(), fl.LearnedHalt(D).double()
    with torch.no_grad():  # a sample halts once its first feature exceeds 0.2
        halt.proj.weight.copy_(torch.eye(1, D, dtype=torch.float64))
        halt.proj.bias.fill_(-0.2)
    g = fl.Flow(a).loop(body).until(halt, 4).build()

    def alone(h: Tensor) -> Tensor:
        for i in range(4):
            h = body(h)
            if i + 1 < 4 and float(halt(h).detach()) > 0:  # this sample halts
                break
        return h

    return Case(g, lambda x: rows(alone, a(x)), (x64(B, D),), sparse=True)


def gate(router: Callable[[], nn.Module], n: int, sparse: bool) -> Callable[[], Case]:
    def build() -> Case:
        a, route = lin(), router().double()
        experts = [lin() for _ in range(n)]
        g = fl.Flow(a).gate(route, *experts).build()

        def oracle(x: Tensor) -> Tensor:
            h = a(x)
            w = route(h)
            total = torch.zeros_like(h)
            for i, expert in enumerate(experts):
                total = total + w[:, i : i + 1] * expert(h)
            return total

        return Case(g, oracle, (x64(B, D),), sparse=sparse)

    return build


def switch_fixed() -> Case:
    a, b1, b2 = lin(), lin(), lin()
    g = fl.Flow(a).switch(fl.FixedSelector(1), b1, b2).build()
    return Case(g, lambda x: b2(a(x)), (x64(B, D),), sparse=True)


def switch_per_sample() -> Case:
    a, select = lin(), fl.ArgmaxSelector(D, 2).double()
    branches = [lin(), lin()]
    g = fl.Flow(a).switch(select, *branches).build()

    def alone(h: Tensor) -> Tensor:
        out: Tensor = branches[int(select(h))](h)
        return out

    return Case(g, lambda x: rows(alone, a(x)), (x64(B, D),), sparse=True)


def map_each() -> Case:
    a, body = lin(), Block()
    g = fl.Flow(a).map(body).each().build()
    return Case(g, lambda x: rows(body, a(x)), (x64(B, D),))


def map_over() -> Case:
    a, c, body = lin(), lin(), Block()
    g = fl.Flow(a).tag("source").through(c).map(body).over("source").build()
    return Case(g, lambda x: rows(body, a(x)), (x64(B, D),), sparse=True)


def map_batched_slices() -> Case:
    a, body = lin(), Block(2)
    g = fl.Flow(a).map(body).batched().slices(2).build()
    return Case(g, lambda x: body(a(x).reshape(-1, 2)).reshape(B, D), (x64(B, D),))


def reshape() -> Case:
    a = lin()
    g = fl.Flow(a).through(fl.Reshape(-1, 2, 2)).build()
    return Case(g, lambda x: a(x).reshape(-1, 2, 2), (x64(B, D),))


NODE_KINDS: tuple[NodeKind, ...] = (
    NodeKind("through", through, ("Flow", "through")),
    NodeKind("also", also, ("also", "residual")),
    NodeKind("fork_using", fork_using, ("fork", "tag", "using")),
    NodeKind(
        "merge_add",
        split_merge(fl.Add, lambda p, q: p + q),
        ("split", "tag_group", "merge", "Add"),
    ),
    NodeKind("merge_mean", split_merge(fl.Mean, lambda p, q: (p + q) / 2), ("split", "Mean")),
    NodeKind(
        "merge_cat",
        split_merge(lambda: fl.Cat(dim=-1), lambda p, q: torch.cat([p, q], -1)),
        ("split", "Cat"),
    ),
    NodeKind("input", graph_input, ("input",)),
    NodeKind("forward_reference", forward_reference, ("state_read", "StateAdd")),
    NodeKind("nested_graph", nested_graph, ("label", "graph")),
    NodeKind("loop_for", loop_for, ("loop", "for_")),
    NodeKind("loop_while", loop_while_threshold, ("while_", "ThresholdHalt")),
    NodeKind("loop_until_per_sample", loop_until_learned, ("until", "LearnedHalt")),
    NodeKind(
        "gate_softmax", gate(lambda: fl.SoftmaxRouter(D, 2), 2, False), ("gate", "SoftmaxRouter")
    ),
    NodeKind("gate_sigmoid", gate(lambda: fl.SigmoidRouter(D, 2), 2, False), ("SigmoidRouter",)),
    NodeKind("gate_top_k", gate(lambda: fl.TopKRouter(D, 3, k=1), 3, True), ("TopKRouter",)),
    NodeKind("switch_fixed", switch_fixed, ("switch", "FixedSelector")),
    NodeKind("switch_per_sample", switch_per_sample, ("ArgmaxSelector",)),
    NodeKind("map_each", map_each, ("map", "each")),
    NodeKind("map_over", map_over, ("over",)),
    NodeKind("map_batched_slices", map_batched_slices, ("batched", "slices")),
    NodeKind("reshape", reshape, ("Reshape",)),
)
"""Every node kind; `tests/test_node_contracts.py` checks that they cover the whole
builder and every built-in node of ``flowdl.__all__``."""
