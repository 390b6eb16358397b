"""The reference interpreter: what a described graph must compute, in plain torch.

`Interpreter` walks a `Description` and computes each call directly: it holds its own
copies of the weights (drawn from the same seeds), its own state between calls, and
its own loops, halting, routing and references, written from the documented
behaviour (``docs/graph-builder.md``, the API contract), never with flowdl's
executor or its built-in modules (routers, selectors, halts, merges and
`fl.StateAdd` are computed here from their documented formulas). Only the user
modules' maths (`flowdl._fuzz.leaves`) is shared with the built graph.

The rules it follows:

- a ``using`` of a tag defined later reads the value that tag had when the graph last
  completed a call (detached: history is cut between top-level calls, kept inside
  one), or, with none, the tag's ``init`` or zeros like the reading node's stream;
- each graph call, nested ones included, writes its state when it completes, so a
  stateful loop body carries its state from one iteration to the next;
- ``while_`` tests before each iteration, ``until`` after; a scalar condition halts
  the batch, a ``[B]`` or ``[B, 1]`` one each sample *as if it ran alone* (its rows of
  the stream, of every nested state and of the per-sample references), so a halted
  sample keeps its state and the state of its body. A reference is per sample by
  what it is, not its shape: values from the stream, state and inputs declared
  ``per_sample=True`` are; undeclared inputs, tags declared ``shared=True`` and
  tensor inits (used as they are) are passed whole;
- a sparse gate runs each expert on the samples routed to it, a per-sample switch
  each branch on its samples; what no sample chose does not run.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from flowdl._fuzz import leaves
from flowdl._fuzz.ir import (
    Also,
    Description,
    Fork,
    Gate,
    GraphSpec,
    Halt,
    Leaf,
    Loop,
    Map,
    Merge,
    Module,
    Selector,
    Split,
    Step,
    Switch,
    Tag,
    Through,
    nested_graphs,
    reads_state,
    refs_of,
    tags_after,
)

State = dict[tuple[str, str], Tensor]
"""Stored state: ``(graph uid, tag) -> value`` (always ``[B, ...]``)."""


@dataclass(frozen=True)
class Ref:
    """A value read through ``using``: `batched` when its first dimension is the batch."""

    value: Tensor
    batched: bool = True

    def row(self, i: int) -> Ref:
        """What sample `i` alone reads."""
        return Ref(self.value[i : i + 1], True) if self.batched else self


@dataclass
class _Call:
    """What one run records: the state it reads and writes, what ran, top-level tags."""

    state: State
    ran: set[str] = field(default_factory=set)
    tags: dict[str, Tensor] = field(default_factory=dict)
    iterations: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Outcome:
    """One call's result.

    Attributes:
        output: the graph's output.
        tags: the top-level graph's tagged values (inputs left out).
        iterations: per top-level tagged loop, how many iterations each sample ran.
        ran: the uids of the nested graphs that ran in this call.
    """

    output: Tensor
    tags: dict[str, Tensor]
    iterations: dict[str, Tensor]
    ran: set[str]


class Interpreter:
    """Computes a valid description's calls.

    Example:
        >>> import torch
        >>> from flowdl._fuzz.ir import CallSpec, Description, GraphSpec, Leaf, Tag, Through
        >>> cell = GraphSpec("top", 2, Leaf("sin", 1, 2, 2),
        ...                  steps=(Through(Leaf("stateadd", 0, 2, 2, 1), ("h",)), Tag("h")))
        >>> interp = Interpreter(Description(0, "state", cell, (CallSpec(1),)))
        >>> x = torch.full((1, 2), torch.pi / 2, dtype=torch.float64)  # sin(x) = 1
        >>> [interp.call(x, []).output[0, 0].item() for _ in range(3)]  # state accumulates
        [1.0, 2.0, 3.0]
    """

    def __init__(self, description: Description) -> None:
        self.description = description
        self.params: dict[str, Tensor] = {}
        self.state: State = {}
        self.graphs = {g.uid: g for g in [description.graph, *nested_graphs(description.graph)]}

    def reset(self) -> None:
        """Forget the state, as ``g.reset_state()`` does."""
        self.state = {}

    def call(self, x: Tensor, aux: list[Tensor]) -> Outcome:
        """One call of the top-level graph on `x` and its auxiliary inputs."""
        top = self.description.graph
        run = _Call(dict(self.state))
        refs = [Ref(a, i.per_sample) for i, a in zip(top.inputs, aux, strict=True)]
        output = self.graph(top, x, refs, run, top=True)
        self.state = {key: value.detach() for key, value in run.state.items()}
        return Outcome(output, run.tags, run.iterations, run.ran)

    # ------------------------------------------------------------ weights

    def weight(self, key: str, make: Tensor) -> Tensor:
        """The interpreter's own copy of a parameter (made once, then reused)."""
        if key not in self.params:
            self.params[key] = make.clone().requires_grad_(True)
        return self.params[key]

    def leaf_weights(self, leaf: Leaf) -> dict[str, Tensor]:
        drawn = leaves.leaf_weights(leaf.kind, leaf.seed, leaf.din, leaf.dout, leaf.arity)
        return {name: self.weight(f"{leaf.seed}.{name}", w) for name, w in drawn.items()}

    def projection(self, seed: int, din: int, dout: int) -> tuple[Tensor, Tensor]:
        weight, bias = leaves.projection_weights(seed, din, dout)
        return self.weight(f"{seed}.weight", weight), self.weight(f"{seed}.bias", bias)

    # ------------------------------------------------------------ graphs and modules

    def module(self, module: Module, x: Tensor, refs: list[Ref], run: _Call) -> Tensor:
        if isinstance(module, GraphSpec):
            return self.graph(module, x, refs, run)
        values = [r.value for r in refs]
        if module.kind == "stateadd":  # fl.StateAdd: the sum of its inputs
            return _sum([x, *values])
        return leaves.leaf_forward(module.kind, self.leaf_weights(module), x, values)

    def graph(
        self, spec: GraphSpec, x: Tensor, inputs: list[Ref], run: _Call, top: bool = False
    ) -> Tensor:
        """One call of `spec`; its state is written when it completes."""
        # an input is per sample when declared so (what it is, not its shape), else
        # shared; a value without rows (a tensor init on a first call) stays whole
        env = {
            i.name: Ref(r.value, i.per_sample and r.batched)
            for i, r in zip(spec.inputs, inputs, strict=True)
        }
        stream = self.module(spec.entry, x, [], run)
        counts: Tensor | None = None  # the iterations of the loop the stream comes from
        for step in spec.steps:
            if isinstance(step, Tag):
                env[step.name] = Ref(stream)
                if top and counts is not None:
                    run.iterations[step.name] = counts
                continue
            stream, counts = self.step(spec, step, stream, env, run)
        for index in range(len(spec.steps)):
            if reads_state(spec, index):
                for tag in set(refs_of(spec.steps[index])) & tags_after(spec, index):
                    run.state[(spec.uid, tag)] = env[tag].value
        if top:
            names = {i.name for i in spec.inputs}
            run.tags = {k: r.value for k, r in env.items() if k not in names}
        else:
            run.ran.add(spec.uid)
        return stream

    def refs(
        self,
        spec: GraphSpec,
        names: tuple[str, ...],
        stream: Tensor,
        env: dict[str, Ref],
        run: _Call,
    ) -> list[Ref]:
        """The values `names` read: this call's (defined earlier) or the state."""
        found = []
        for name in names:
            if name in env:
                found.append(env[name])
            elif (spec.uid, name) in run.state:
                found.append(Ref(run.state[(spec.uid, name)]))
            else:
                found.append(self.initial(spec, name, stream))
        return found

    def initial(self, spec: GraphSpec, name: str, stream: Tensor) -> Ref:
        """A state tag's first value: its ``init``, or zeros like the reading stream."""
        init = next((s.init for s in spec.steps if isinstance(s, Tag) and s.name == name), None)
        if init is None or init.kind == "shape":
            return Ref(torch.zeros(stream.shape[0], spec.dim, dtype=stream.dtype))
        if init.kind == "callable":
            return Ref(leaves.init_callable(stream))
        value = leaves.init_weight(init.kind, init.seed, spec.dim)
        if init.kind != "buffer":  # a parameter: learned
            value = self.weight(f"{init.seed}.init", value)
        return Ref(value, batched=False)

    def step(
        self, spec: GraphSpec, step: Step, x: Tensor, env: dict[str, Ref], run: _Call
    ) -> tuple[Tensor, Tensor | None]:
        """The stream after `step` (not a tag), and the iterations if it is a loop."""
        if isinstance(step, Map):
            return self.map(step, env[step.tag].value if step.mode == "over" else x, run), None
        assert not isinstance(step, Tag)
        refs = self.refs(spec, step.refs, x, env, run)
        if isinstance(step, Loop):
            return self.loop(step, x, refs, run)
        if isinstance(step, Through):
            out = self.module(step.module, x, refs, run)
        elif isinstance(step, Also):
            out = x + self.module(step.module, x, refs, run)
        elif isinstance(step, Fork):
            env[step.tag] = Ref(self.module(step.module, x, refs, run), not step.shared)
            out = x
        elif isinstance(step, Split):
            outs = [self.module(m, x, refs, run) for m in step.branches]
            if step.group:
                env.update({f"{step.group}_{i}": Ref(o) for i, o in enumerate(outs)})
            assert step.merge is not None
            out = self.merge(step.merge, outs, run)
        elif isinstance(step, Gate):
            out = self.gate(step, x, refs, run)
        else:
            out = self.switch(step, x, refs, run)
        return out, None

    # ------------------------------------------------------------ constructs

    def merge(self, merge: Merge, outs: list[Tensor], run: _Call) -> Tensor:
        if merge.kind == "add":
            return _sum(outs)
        if merge.kind == "mean":
            return _sum(outs) / len(outs)
        if merge.kind == "product":
            return leaves.product(*outs)
        assert merge.project is not None
        return self.module(merge.project, torch.cat(outs, dim=-1), [], run)

    def gate(self, step: Gate, x: Tensor, refs: list[Ref], run: _Call) -> Tensor:
        """``sum_i w[:, i] * expert_i(x)``; a sparse gate runs expert i on its samples."""
        router = step.router
        weight, bias = self.projection(router.seed, x.shape[-1], router.n)
        logits = torch.nn.functional.linear(_sum([x, *(r.value for r in refs)]), weight, bias)
        if router.kind == "sigmoid":  # fl.SigmoidRouter: independent sigmoid weights
            return _sum([torch.sigmoid(logits[:, i : i + 1]) * self.module(e, x, [], run)
                         for i, e in enumerate(step.experts)])  # fmt: skip
        probabilities = torch.softmax(logits, dim=-1)
        if router.kind == "softmax":
            return _sum([probabilities[:, i : i + 1] * self.module(e, x, [], run)
                         for i, e in enumerate(step.experts)])  # fmt: skip
        # fl.TopKRouter: the softmax probabilities of the k largest logits, zeros
        # elsewhere; renormalised to sum to 1 when asked (by default from k=2 on)
        chosen = _top(logits, router.k)  # [B, n] bool
        weights = probabilities * chosen
        if router.k > 1 if router.renormalize is None else router.renormalize:
            weights = weights / weights.sum(-1, keepdim=True)
        out = torch.zeros_like(x)
        for i, expert in enumerate(step.experts):
            rows = chosen[:, i].nonzero().flatten()
            if len(rows):
                part = weights[rows, i : i + 1] * self.module(expert, x[rows], [], run)
                out = out.index_add(0, rows, part)
        return out

    def switch(self, step: Switch, x: Tensor, refs: list[Ref], run: _Call) -> Tensor:
        """The selected branch for the batch, or each branch on the samples it got."""
        choice = self.select(step.selector, x, [r.value for r in refs])
        if isinstance(choice, int):
            return self.module(step.branches[choice], x, [], run)
        out = torch.zeros_like(x)
        for j, branch in enumerate(step.branches):
            rows = (choice == j).nonzero().flatten()
            if len(rows):
                out = out.index_copy(0, rows, self.module(branch, x[rows], [], run))
        return out

    def select(self, selector: Selector, x: Tensor, refs: list[Tensor]) -> int | Tensor:
        if selector.kind == "fixed":
            return selector.index
        if selector.kind == "batch":
            return leaves.batch_selector(x, refs, selector.n)
        if selector.kind == "rows":
            return leaves.row_selector(x, refs, selector.n)
        weight, bias = self.projection(selector.seed, x.shape[-1], selector.n)
        return torch.nn.functional.linear(_sum([x, *refs]), weight, bias).argmax(-1)

    def map(self, step: Map, x: Tensor, run: _Call) -> Tensor:
        """The body per row (or once on all rows when batched), or per slice."""
        if step.mode == "slices":
            width = x.shape[-1] // step.n
            pieces = [x[..., j * width : (j + 1) * width] for j in range(step.n)]
            return torch.cat([self.module(step.body, p, [], run) for p in pieces], dim=-1)
        if step.batched:
            return self.module(step.body, x, [], run)
        return torch.cat([self.module(step.body, x[i : i + 1], [], run) for i in range(len(x))])

    def halted(self, halt: Halt, state: Tensor) -> Tensor:
        """The halt condition's value (positive halts), without gradient."""
        with torch.no_grad():
            if halt.kind == "threshold":  # fl.ThresholdHalt: max(state) - t, the batch
                return state.max() - halt.level
            if halt.kind == "learned":  # fl.LearnedHalt: Linear(state), [B, 1]
                weight, bias = self.projection(halt.seed, state.shape[-1], 1)
                return torch.nn.functional.linear(state, weight, bias)
            if halt.kind == "mean":
                return leaves.mean_halt(state, halt.level)
            return leaves.row_sum_halt(state, halt.level, keepdim=halt.kind == "rowsum1")

    def loop(
        self, step: Loop, x: Tensor, refs: list[Ref], run: _Call, alone: bool = False
    ) -> tuple[Tensor, Tensor]:
        """The loop's output and the iterations each sample ran (`alone`: `x` is one
        sample of a per-sample loop)."""
        if step.halt is not None and step.halt.per_sample and not alone:
            return self.loop_per_sample(step, x, refs, run)
        state, count = x, 0
        for _ in range(step.count):
            if step.mode == "while" and self.stops(step, state):
                break
            state, count = self.module(step.body, state, refs, run), count + 1
            if step.mode == "until" and self.stops(step, state):
                break
        return state, torch.full((len(x),), count, dtype=torch.long)

    def stops(self, step: Loop, state: Tensor) -> bool:
        assert step.halt is not None
        return bool((self.halted(step.halt, state) > 0).all())

    def loop_per_sample(
        self, step: Loop, x: Tensor, refs: list[Ref], run: _Call
    ) -> tuple[Tensor, Tensor]:
        """Per-sample halting: each sample runs the loop alone, with its rows of the
        batch-sized references and of the state of every graph in the body."""
        owned = {g.uid for g in _graphs_in(step.body)}
        mine = {key: value for key, value in run.state.items() if key[0] in owned}
        outs, counts, states = [], [], []
        for i in range(len(x)):
            alone = _Call({key: value[i : i + 1] for key, value in mine.items()})
            out, count = self.loop(step, x[i : i + 1], [r.row(i) for r in refs], alone, True)
            outs.append(out)
            counts.append(count)
            states.append(alone.state)
            run.ran |= alone.ran
        for key in {key for state in states for key in state}:
            rows = [state[key] if key in state else self.first_row(key) for state in states]
            run.state[key] = torch.cat(rows)
        return torch.cat(outs), torch.cat(counts)

    def first_row(self, key: tuple[str, str]) -> Tensor:
        """The first value of a nested state, for one sample that never ran its graph."""
        spec = self.graphs[key[0]]
        ref = self.initial(spec, key[1], torch.zeros(1, spec.dim, dtype=leaves.DTYPE))
        return ref.value.reshape(1, spec.dim)


def _graphs_in(module: Module) -> list[GraphSpec]:
    """`module` and the graphs nested in it, when it is a graph."""
    return [module, *nested_graphs(module)] if isinstance(module, GraphSpec) else []


def _sum(values: list[Tensor]) -> Tensor:
    out = values[0]
    for value in values[1:]:
        out = out + value
    return out


def _top(logits: Tensor, k: int) -> Tensor:
    """``[B, n]`` bool: True at the `k` largest logits of each row."""
    order = logits.argsort(dim=-1, descending=True)
    ranks = order.argsort(dim=-1)
    return ranks < k
