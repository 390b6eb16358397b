"""The standing fuzzer in CI: a few hundred graphs from a fixed seed, some in fast mode,
with no mismatch and no crash; and what the report says about them."""

from __future__ import annotations

import pytest

from flowdl._fuzz import ir
from flowdl._fuzz.describe import CATEGORIES, describe
from flowdl._fuzz.render import render
from flowdl._fuzz.run import FAST, FuzzReport, fuzz

SEED, GRAPHS, FAST_GRAPHS = 0, 300, 3
"""The CI run: about 10 s on a quiet core (fast mode compiles: about 2 s a graph)."""


@pytest.fixture(scope="module")
def report() -> FuzzReport:
    return fuzz(GRAPHS, seed=SEED, fast=FAST_GRAPHS, shrinking=False)


def test_a_few_hundred_graphs_have_no_mismatch_and_no_crash(report: FuzzReport) -> None:
    assert report.ok, "\n".join(report.lines())


def test_the_run_covers_every_category_valid_and_invalid(report: FuzzReport) -> None:
    for name in CATEGORIES:
        assert report.tallies[name].built > 0, name
    assert sum(t.rejected for t in report.tallies.values()) > GRAPHS // 20
    assert report.tallies[FAST].built == FAST_GRAPHS
    lines = report.lines()
    assert (
        lines[0] == f"flowdl fuzz: {GRAPHS} graphs from seed {SEED}, the first 3 also in fast mode"
    )
    assert lines[1].split() == ["category", "built", "rejected", "mismatches", "crashes"]
    assert any(line.startswith("all ") for line in lines)
    assert "graphs/s" in lines[len(CATEGORIES) + 4]


def test_a_description_is_plain_data_drawn_from_its_seed() -> None:
    for seed in range(40):
        description = describe(seed)
        assert description == describe(seed)
        assert description.seed == seed
        assert eval(repr(description), vars(ir)) == description  # nothing but data
        assert render(description).startswith(f"seed {seed} [{description.category}]")
    invalid = sum(describe(seed).invalid is not None for seed in range(400))
    assert 30 < invalid < 100  # INVALID_SHARE of 400


def test_every_construct_is_drawn() -> None:
    seen: set[str] = set()
    for seed in range(200):
        graph = describe(seed).graph
        for spec in [graph, *ir.nested_graphs(graph)]:
            for step in spec.steps:
                seen.add(type(step).__name__)
                if isinstance(step, ir.Loop):
                    seen.add(f"loop {step.mode}")
                    if step.halt is not None:
                        seen.add("per-sample halt" if step.halt.per_sample else "batch halt")
                    if isinstance(step.body, ir.GraphSpec) and step.body.stateful:
                        seen.add("stateful body")
                if isinstance(step, ir.Gate):
                    seen.add(f"router {step.router.kind}")
                if isinstance(step, ir.Switch):
                    seen.add(f"selector {step.selector.kind}")
                if isinstance(step, ir.Map):
                    seen.add(f"map {step.mode}")
                if isinstance(step, ir.Tag) and step.init is not None:
                    seen.add(f"init {step.init.kind}")
            if spec.inputs:
                seen.add("inputs")
    wanted = {
        "Through", "Also", "Fork", "Split", "Tag", "loop for", "loop while", "loop until",
        "per-sample halt", "batch halt", "stateful body", "router softmax", "router sigmoid",
        "router topk", "selector fixed", "selector argmax", "selector rows", "selector batch",
        "map each", "map over", "map slices", "init shape", "init vector", "init row",
        "init buffer", "init callable", "inputs",
    }  # fmt: skip
    assert wanted <= seen, wanted - seen
