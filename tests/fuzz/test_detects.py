"""The fuzzer notices a wrong graph: a wrong output, a wrong gradient, lost state, a
stale tag, wrong iterations, a crash, an invalid description built, and a valid one
refused. Each test breaks flowdl on purpose (monkeypatch) and checks the verdict."""

from __future__ import annotations

import random
from typing import Any

import pytest
from torch import Tensor

import flowdl as fl
from flowdl._fuzz import build as fuzz_build
from flowdl._fuzz.describe import describe
from flowdl._fuzz.invalid import MISTAKES, make_invalid
from flowdl._fuzz.ir import (
    CallSpec,
    Description,
    GraphSpec,
    Halt,
    Leaf,
    Loop,
    Selector,
    Switch,
    Tag,
    Through,
)
from flowdl._fuzz.run import fuzz
from flowdl._fuzz.shrink import shrink, signature
from flowdl._fuzz.trial import run_trial

D = 3


def stateful() -> Description:
    graph = GraphSpec(
        "top",
        D,
        Leaf("tanh", 1, D, D),
        steps=(Through(Leaf("tanh", 2, D, D, 1), ("h",)), Tag("h")),
    )
    return Description(1, "state", graph, (CallSpec(3), CallSpec(3), CallSpec(3, reset=True)))


def switched() -> Description:
    """A branch (a nested graph with a tag) that the batch takes on some calls only."""
    branch = GraphSpec("b1", D, Leaf("sin", 0, D, D), steps=(Tag("seen"),))
    switch = Switch(Selector("batch", 0, 2), (Leaf("linear", 3, D, D), branch))
    graph = GraphSpec("top", D, Leaf("linear", 4, D, D), steps=(switch,))
    calls = tuple(CallSpec(2) for _ in range(6))
    return Description(2, "switch-batch", graph, calls)


def looped() -> Description:
    loop = Loop(Leaf("tanh", 5, D, D), "while", 3, Halt("rowsum", 0, 0.0))
    graph = GraphSpec("top", D, Leaf("linear", 6, D, D), steps=(loop, Tag("think")))
    return Description(3, "loop-sample-halt", graph, (CallSpec(6),))


def test_the_fixed_descriptions_pass_unbroken() -> None:
    for description in (stateful(), switched(), looped()):
        assert run_trial(description)[0].status == "ok"


def wrap_forward(monkeypatch: pytest.MonkeyPatch, change: Any) -> None:
    forward = fl.Graph.forward

    def wrong(self: fl.Graph, *args: Any, **kwargs: Any) -> Any:
        return change(forward(self, *args, **kwargs))

    monkeypatch.setattr(fl.Graph, "forward", wrong)


def test_a_slightly_wrong_output_is_a_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    wrap_forward(monkeypatch, lambda y: y + 1e-6)
    verdict, _ = run_trial(stateful())
    assert verdict.status == "mismatch"
    assert verdict.details[0].startswith("call 0: output differs")


def test_a_wrong_gradient_with_the_right_output_is_a_mismatch(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrap_forward(monkeypatch, lambda y: y + 1e-3 * (y - y.detach()))
    verdict, _ = run_trial(stateful())
    assert verdict.status == "mismatch"
    assert all("gradient w.r.t." in d for d in verdict.details)
    assert any("gradient w.r.t. x " in d for d in verdict.details)


def test_state_that_survives_reset_is_a_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fl.Graph, "reset_state", lambda self: None)
    verdict, _ = run_trial(stateful())
    assert verdict.status == "mismatch"
    assert verdict.details[0].startswith("call 2: output differs")


def test_a_stale_tag_of_a_branch_not_taken_is_a_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    remembered: dict[int, Tensor] = {}
    tagged = fl.Graph.tagged

    def stale(self: fl.Graph, tag: str) -> Any:
        value = tagged(self, tag)
        if value is not None:
            remembered[id(self)] = value
        return remembered.get(id(self))

    monkeypatch.setattr(fl.Graph, "tagged", stale)
    verdict, _ = run_trial(switched())
    assert verdict.status == "mismatch"
    assert "is stale: b1 did not run" in verdict.details[0]


def test_wrong_iterations_are_a_mismatch(monkeypatch: pytest.MonkeyPatch) -> None:
    iterations = fl.Graph.iterations
    monkeypatch.setattr(fl.Graph, "iterations", lambda self, tag: iterations(self, tag) + 1)
    verdict, _ = run_trial(looped())
    assert verdict.status == "mismatch"
    assert verdict.details[0].startswith("call 0: iterations('think')")


def test_a_failing_node_is_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: Any, x: Tensor, r0: Tensor) -> Tensor:
        raise RuntimeError("boom")

    monkeypatch.setattr(fuzz_build.Leaf1, "forward", boom)
    verdict, _ = run_trial(stateful())
    assert verdict.status == "crash"
    assert verdict.built
    assert verdict.details[0].startswith("call 0: the graph raised flowdl._errors.GraphError")


def test_an_invalid_description_that_builds_is_a_mismatch() -> None:
    accepted = Description(1, "state", stateful().graph, (CallSpec(2),), invalid="made up")
    verdict, _ = run_trial(accepted)
    assert verdict.status == "mismatch"
    assert verdict.details == ["built although invalid (made up)"]


def test_a_valid_description_refused_is_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise fl.BuildError("no", expected="-", received="-", fix="-")

    monkeypatch.setattr(fl.Flow, "build", refuse)
    verdict, _ = run_trial(stateful())
    assert verdict.status == "crash"
    assert not verdict.built
    assert "build() of a valid description raised" in verdict.details[0]


@pytest.mark.parametrize("mistake", MISTAKES)
def test_every_mistake_is_refused_with_a_build_error(mistake: str) -> None:
    for seed in range(3):  # top level and nested graphs
        base = describe(seed)
        base = Description(base.seed, base.category, base.graph, base.calls)
        bad = make_invalid(base, mistake, random.Random(seed))
        verdict, _ = run_trial(bad)
        assert verdict.status == "rejected", (bad.invalid, verdict.details)


def test_a_failure_is_reported_with_its_seed_and_shrunk(monkeypatch: pytest.MonkeyPatch) -> None:
    wrap_forward(monkeypatch, lambda y: y * 1.001)
    report = fuzz(2, seed=40)
    assert not report.ok
    failure = report.failures[0]
    assert failure.rerun == f"python -m flowdl fuzz --seed {failure.description.seed} --graphs 1"
    assert failure.shrunk is not None
    assert signature(run_trial(failure.shrunk)[0]) == signature(failure.verdict)
    text = "\n".join(report.lines())
    assert "rerun: python -m flowdl fuzz --seed" in text
    assert "shrunk to:" in text or failure.shrunk == failure.description


def test_shrinking_keeps_the_failure_and_drops_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    wrap_forward(monkeypatch, lambda y: y * 1.001)
    description = describe(2)
    verdict, _ = run_trial(description)
    small = shrink(description, verdict)
    assert len(small.graph.steps) <= len(description.graph.steps)
    assert len(small.calls) == 1
    assert signature(run_trial(small)[0]) == signature(verdict)
