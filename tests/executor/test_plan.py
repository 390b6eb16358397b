"""The compiled plan: levels, slot reuse, and a forward that holds no dead activations."""

from __future__ import annotations

import gc
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import torch
from torch import Tensor, nn

import flowdl as fl
from tests.support import assert_levels_are_independent


def test_a_long_chain_lives_in_one_slot() -> None:
    flow = fl.Flow(nn.Identity())
    for _ in range(20):
        flow = flow.through(nn.Tanh())
    g = flow.build()
    assert g._plan.n_slots == 1
    want = torch.ones(2)
    for _ in range(20):
        want = want.tanh()
    torch.testing.assert_close(g(torch.ones(2)), want)


def test_branches_keep_their_input_until_the_last_reader() -> None:
    g = fl.Flow(nn.Identity()).split(lambda x: x + 1, lambda x: x * 2).merge(fl.Add()).build()
    assert g(torch.tensor(3.0)).item() == 10.0


def test_tagged_values_survive_slot_reuse() -> None:
    flow = fl.Flow(nn.Identity()).tag("start")
    for _ in range(10):
        flow = flow.through(lambda x: x + 1)
    g = flow.tag("end").build()
    g(torch.zeros(1))
    assert g.tagged("start").item() == 0.0
    assert g.tagged("end").item() == 10.0


def test_dead_activations_are_freed_during_the_forward() -> None:
    outputs: list[weakref.ref[Tensor]] = []
    alive_when_third_runs: list[bool] = []

    def record(x: Tensor) -> Tensor:
        y = x * 2
        if len(outputs) == 2:
            gc.collect()
            alive_when_third_runs.append(outputs[0]() is not None)
        outputs.append(weakref.ref(y))
        return y

    g = fl.Flow(record).through(record).through(record).build()  # type: ignore[arg-type]
    with torch.no_grad():
        g(torch.ones(1000))
    assert alive_when_third_runs == [False]


def test_nodes_of_one_level_never_share_a_slot() -> None:
    g = (
        fl.Flow(nn.Identity())
        .split(nn.Tanh(), nn.ReLU(), nn.Sigmoid())
        .merge(fl.Add())
        .split(nn.Tanh(), nn.ReLU())
        .merge(fl.Mean())
        .build()
    )
    assert_levels_are_independent(g)


def test_levels_run_concurrently_give_the_sequential_result() -> None:
    g = (
        fl.Flow(nn.Identity())
        .split(torch.tanh, torch.relu, torch.sigmoid)
        .merge(fl.Add())
        .tag("mid")
        .split(lambda x: x * 2, lambda x: x - 1)
        .merge(fl.Mean())
        .through(lambda x, m: x + m)
        .using("mid")
        .build()
    )
    x = torch.randn(5)
    want = g(x)
    plan = g._plan
    vals: list[object] = [None] * plan.n_slots
    vals[0] = x
    with ThreadPoolExecutor(max_workers=4) as pool:
        for level in plan.levels:
            # Each node reads its inputs and writes its output in its own thread; the
            # later nodes of a level go first, so a slot shared within a level shows.
            def run(i: int, level: tuple[int, ...] = level) -> None:
                time.sleep(0.005 * (len(level) - 1 - level.index(i)))
                fn, a, b, rest, out, _ = plan.steps[i]
                args = [vals[a]] + ([] if b < 0 else [vals[b]]) + [vals[k] for k in rest or ()]
                vals[out] = fn(*args)

            list(pool.map(run, level))
    torch.testing.assert_close(vals[plan.out_slot], want)


def test_levels_follow_the_longest_path() -> None:
    g = (
        fl.Flow(nn.Identity())
        .tag("x0")
        .through(nn.Tanh())
        .through(nn.Tanh())
        .through(fl.Add())
        .using("x0")
        .build()
    )
    assert g.levels == (("input",), ("Identity_0",), ("Tanh_0",), ("Tanh_1",), ("Add_0",))
