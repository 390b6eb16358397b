"""Declared tensor inits survive the meta-device recipe and every way of loading.

The recipe: build under ``with torch.device("meta")``, ``to_empty(device=...)``, then
``load_state_dict(sd)`` (or ``load_state_dict(sd, assign=True)`` alone). A tensor
``init`` is a buffer of the graph (a parameter if it is an `nn.Parameter`), so the
state dict carries it and the recipe gives, bit for bit, what an ordinary build gives.
"""

from __future__ import annotations

import copy
import pickle
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import Tensor, nn

import flowdl as fl
from tests.support import Mix

D, B = 4, 3


def recurrent(init: Callable[[], Tensor] | None = None) -> fl.Graph:
    """A graph whose state starts from a declared tensor (made when the graph is built)."""
    torch.manual_seed(0)
    make = init or (lambda: torch.randn(B, D, dtype=torch.float64))
    return (
        fl.Flow(nn.Linear(D, D).double())
        .through(Mix(D).double())
        .using("memory")
        .tag("memory", init=make())
        .build()
    )


def nested() -> fl.Graph:
    """The recurrent graph inside another, next to a learned init."""
    inner = recurrent()
    learned = nn.Parameter(torch.randn(B, D, dtype=torch.float64))
    return fl.Flow(inner).through(Mix(D).double()).using("acc").tag("acc", init=learned).build()


def outputs(g: nn.Module, calls: int = 3) -> list[Tensor]:
    """The outputs of `calls` calls on fixed inputs (state carried from call to call)."""
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        return [g(torch.randn(B, D, generator=gen, dtype=torch.float64)) for _ in range(calls)]


def assert_identical(got: list[Tensor], want: list[Tensor]) -> None:
    assert len(got) == len(want)
    for a, b in zip(got, want, strict=True):
        assert a.dtype == b.dtype
        assert torch.equal(a, b)


@pytest.mark.parametrize("build", [recurrent, nested], ids=["flat", "nested"])
def test_the_meta_recipe_gives_the_ordinary_build_bit_for_bit(
    build: Callable[[], fl.Graph],
) -> None:
    ordinary = build()
    state = ordinary.state_dict()
    want = outputs(ordinary)
    with torch.device("meta"):
        lazy = build()  # the init tensors themselves are made on the meta device
    assert all(t.is_meta for t in lazy.state_dict().values())
    lazy.to_empty(device="cpu")
    lazy.load_state_dict(state)  # strict
    assert_identical(outputs(lazy), want)


def test_the_meta_recipe_with_assign_needs_no_to_empty() -> None:
    ordinary = nested()
    state = ordinary.state_dict()
    want = outputs(ordinary)
    with torch.device("meta"):
        lazy = nested()
    lazy.load_state_dict(state, assign=True)
    assert_identical(outputs(lazy), want)
    inner = lazy.Graph_0
    assert inner._record.state_inits["memory"] is inner.memory_init
    assert lazy._record.state_inits["acc"] is lazy.acc_init


def test_a_tensor_init_is_a_buffer_in_the_state_dict() -> None:
    g = recurrent()
    init = g._record.state_inits["memory"]
    assert "memory_init" in dict(g.named_buffers())
    assert g.memory_init is init
    assert torch.equal(g.state_dict()["memory_init"], init)
    g.double().float()
    assert g.memory_init.dtype == torch.float32
    assert g._record.state_inits["memory"] is g.memory_init  # moved, and still the one read


def test_to_empty_then_a_flowdl_checkpoint_gives_the_ordinary_build(tmp_path: Path) -> None:
    ordinary = nested()
    want = outputs(ordinary)
    path = tmp_path / "model.safetensors"
    fl.save_checkpoint(path, ordinary)
    with torch.device("meta"):
        lazy = nested()
    lazy.to_empty(device="cpu")
    report = fl.load_checkpoint(path, lazy)
    assert report.hash_matched
    assert "Graph_0.memory_init" in report.loaded
    assert_identical(outputs(lazy), want)


def test_to_empty_forgets_the_state_of_earlier_calls() -> None:
    ordinary = recurrent()
    state = ordinary.state_dict()
    want = outputs(ordinary)
    g = recurrent()
    outputs(g, calls=2)  # state carried, then to_empty: it would be uninitialised memory
    g.to_empty(device="cpu")
    g.load_state_dict(state)
    assert_identical(outputs(g), want)


def test_an_older_state_dict_without_the_init_loads_strictly_and_keeps_the_init() -> None:
    ordinary = recurrent()
    want = outputs(ordinary)
    older: OrderedDict[str, Tensor] = ordinary.state_dict()
    del older["memory_init"]
    metadata: dict[str, dict[str, Any]] = older._metadata  # type: ignore[attr-defined]
    metadata[""]["version"] = 1  # what graphs wrote before inits were buffers
    g = recurrent()
    with torch.no_grad():
        for p in g.parameters():
            p.add_(1.0)
    before = g.memory_init.clone()
    g.load_state_dict(older)  # strict: the missing init is not an error
    assert torch.equal(g.memory_init, before)
    assert_identical(outputs(g), want)


def test_a_current_state_dict_missing_the_init_is_refused_strictly() -> None:
    state = recurrent().state_dict()
    del state["memory_init"]
    with pytest.raises(RuntimeError, match=r'Missing key\(s\) in state_dict: "memory_init"'):
        recurrent().load_state_dict(state)


def test_copies_and_pickles_keep_the_init_registered_and_read() -> None:
    g = recurrent()
    want = outputs(g)
    for twin in (copy.deepcopy(recurrent()), pickle.loads(pickle.dumps(recurrent()))):
        assert twin._record.state_inits["memory"] is twin.memory_init
        assert_identical(outputs(twin), want)
        twin.to_empty(device="cpu")
        twin.load_state_dict(g.state_dict())
        twin.reset_state()
        assert_identical(outputs(twin), want)
