"""Property tests: random chains of builder calls either build and equal an independent
interpreter of the same chain, or raise `fl.BuildError` exactly when the interpreter says
the chain is invalid. Nothing else may happen."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from hypothesis import event, given, settings
from hypothesis import strategies as st
from torch import Tensor

import flowdl as fl
from tests.strategies import CHAIN_BATCH as BATCH
from tests.strategies import CHAIN_DIM as DIM
from tests.strategies import apply_flow, chain_steps, module_for, structured_chains
from tests.support import Mix, assert_levels_are_independent


class Invalid(Exception):
    """The chain breaks a rule of the builder."""


@dataclass
class OracleNode:
    fn: Any
    # ("node", i): node i of this call; ("state", tag, like): tag's previous value
    inputs: list[tuple[Any, ...]] = field(default_factory=list)
    refs: list[str] = field(default_factory=list)


class Oracle:
    """An independent, eager interpreter of a chain of builder calls."""

    def __init__(self) -> None:
        self.nodes: list[OracleNode] = [OracleNode(None)]  # node 0: the input x
        self.input_nodes: dict[str, int] = {}
        self.streams = [0]
        self.targets: list[int] = []
        self.tags: dict[str, int] = {}
        self.groups: set[str] = set()
        self.pending_fork: int | None = None
        self.forward_refs: set[str] = set()
        self.state: dict[str, Tensor] = {}

    def add(self, fn: Any, inputs: list[int]) -> int:
        self.nodes.append(OracleNode(fn, [("node", i) for i in inputs]))
        return len(self.nodes) - 1

    def single(self) -> int:
        if len(self.streams) != 1:
            raise Invalid
        return self.streams[0]

    def depends(self, node: int, on: int) -> bool:
        if node == on:
            return True
        for inp in self.nodes[node].inputs:
            if inp[0] == "node" and self.depends(inp[1], on):
                return True
            if inp[0] == "state" and self.depends(inp[2], on):
                return True
        return False

    def define(self, name: str, node: int) -> None:
        if name in self.tags or name in self.groups:
            raise Invalid
        self.tags[name] = node

    def apply(self, step: tuple[Any, ...], module: Any) -> None:
        kind = step[0]
        if self.pending_fork is not None and kind not in ("tag", "using"):
            raise Invalid
        if kind == "through":
            node = self.add(module, [self.single()])
            self.streams, self.targets = [node], [node]
        elif kind == "also":
            stream = self.single()
            inner = self.add(module, [stream])
            self.streams, self.targets = [self.add(lambda s, u: s + u, [stream, inner])], [inner]
        elif kind == "fork":
            node = self.add(module, [self.single()])
            self.targets, self.pending_fork = [node], node
        elif kind == "split":
            stream = self.single()
            if len(module) < 2:
                raise Invalid
            self.streams = [self.add(m, [stream]) for m in module]
            self.targets = list(self.streams)
        elif kind == "merge":
            if len(self.streams) < 2:
                raise Invalid
            node = self.add(module, list(self.streams))
            self.streams, self.targets = [node], [node]
        elif kind == "tag":
            node = self.pending_fork if self.pending_fork is not None else self.single()
            self.define(step[1], node)
            self.pending_fork = None
        elif kind == "tag_group":
            name = step[1]
            if len(self.streams) < 2 or name in self.groups or name in self.tags:
                raise Invalid
            for i, node in enumerate(self.streams):
                self.define(f"{name}_{i}", node)
            self.groups.add(name)
        elif kind == "using":
            names = step[1:]
            for name in names:
                if name in self.groups:
                    raise Invalid  # a group is not a tag
            for target in self.targets:
                for k, name in enumerate(names):
                    if name in self.nodes[target].refs or name in names[:k]:
                        raise Invalid  # the same reference twice
                    if name in self.tags and self.depends(self.tags[name], target):
                        raise Invalid  # a cycle
            for target in self.targets:
                node = self.nodes[target]
                for name in names:
                    node.refs.append(name)
                    if name in self.tags:
                        node.inputs.append(("node", self.tags[name]))
                    else:
                        node.inputs.append(("state", name, node.inputs[0][1]))
                        self.forward_refs.add(name)
        elif kind == "input":
            name = step[1]
            node = self.add(None, [])
            self.define(name, node)
            self.input_nodes[name] = node

    def finish(self) -> None:
        if self.pending_fork is not None or len(self.streams) != 1:
            raise Invalid
        if any(name not in self.tags for name in self.forward_refs):
            raise Invalid

    def __call__(self, x: Tensor, aux: dict[str, Tensor]) -> Tensor:
        vals: dict[int, Tensor] = {0: x}
        for name, node in self.input_nodes.items():
            vals[node] = aux[name]
        for i, node in enumerate(self.nodes):
            if i in vals:
                continue
            args = []
            for inp in node.inputs:
                if inp[0] == "node":
                    args.append(vals[inp[1]])
                else:
                    previous = self.state.get(inp[1])
                    args.append(torch.zeros_like(vals[inp[2]]) if previous is None else previous)
            vals[i] = node.fn(*args)
        self.state = {name: vals[self.tags[name]].detach() for name in self.forward_refs}
        return vals[self.streams[0]]


@settings(max_examples=600, deadline=None)
@given(steps=st.one_of(st.lists(chain_steps, max_size=12), structured_chains()))
def test_random_chains_build_and_match_or_raise_build_error(steps: list[tuple[Any, ...]]) -> None:
    entry = Mix(DIM).double()
    oracle = Oracle()
    oracle.nodes.append(OracleNode(entry, [("node", 0)]))
    oracle.streams, oracle.targets = [1], [1]
    flow = fl.Flow(entry)
    oracle_error: int | str | None = None
    builder_error: int | str | None = None
    for k, step in enumerate(steps):
        module = module_for(step)
        try:
            oracle.apply(step, module)
        except Invalid:
            oracle_error = k
        try:
            flow = apply_flow(flow, step, module)
        except fl.BuildError:
            builder_error = k
        if oracle_error is not None or builder_error is not None:
            break
    built: fl.Graph | None = None
    if oracle_error is None and builder_error is None:
        try:
            oracle.finish()
        except Invalid:
            oracle_error = "build"
        try:
            built = flow.build()
        except fl.BuildError:
            builder_error = "build"
    # Both reject the chain at the same call (or at build), or both accept it.
    assert builder_error == oracle_error, f"{steps}: builder {builder_error}, oracle {oracle_error}"
    if builder_error is None:
        event("built")
    else:
        event("rejected at build" if builder_error == "build" else "rejected at a call")
    if built is None:
        return
    size = len(built._record.nodes)
    event(f"built with {size} nodes" if size < 8 else "built with 8+ nodes")
    assert built is not None
    names = list(built.input_names[1:])
    assert names == list(oracle.input_nodes)
    for _ in range(3):
        x = torch.randn(BATCH, DIM, dtype=torch.float64)
        aux = {name: torch.randn(BATCH, DIM, dtype=torch.float64) for name in names}
        got = built(x, *aux.values())
        want = oracle(x, aux)
        torch.testing.assert_close(got, want, rtol=0, atol=1e-12)
    params = list(built.parameters())
    if params:
        cot = torch.randn_like(got)
        g1 = torch.autograd.grad(got, params, cot, allow_unused=True)
        g2 = torch.autograd.grad(want, params, cot, allow_unused=True)
        for a, b in zip(g1, g2, strict=True):
            assert (a is None) == (b is None)
            if a is not None:
                torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    assert_levels_are_independent(built)
