"""The compiled plan: levels, slot reuse, and a forward that holds no dead activations."""

from __future__ import annotations

import gc
import weakref

import torch
from torch import Tensor, nn

import flowdl as fl


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
    plan = g._plan
    for level in plan.levels:
        outs = [plan.steps[i][4] for i in level]
        assert len(outs) == len(set(outs))


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
