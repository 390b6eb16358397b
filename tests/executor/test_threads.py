"""Threads sharing one graph: state updates are never lost, observation is the caller's.

A graph with state serialises its calls; a graph without state runs them
concurrently. After a call, `tagged`, `iterations` and `traces` report the calling
thread's own call.
"""

from __future__ import annotations

import copy
import io
import threading
from collections.abc import Callable

import torch
from torch import Tensor, nn

import flowdl as fl


def in_threads(n: int, work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(k: int) -> None:
        try:
            start.wait()
            work(k)
        except BaseException as error:  # reported in the main thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]


class SlowAdd(nn.Module):
    """``h + 1``, with a pause between reading and writing that invites a race."""

    def forward(self, x: Tensor, h: Tensor) -> Tensor:
        out = h + 1
        for _ in range(20):
            torch.ones(64).sum()  # releases the GIL inside the op
        return out


def test_no_state_update_is_lost_with_four_threads() -> None:
    g = fl.Flow(SlowAdd()).using("count").tag("count").build()
    x = torch.zeros(1)

    def work(_: int) -> None:
        with torch.no_grad():
            for _ in range(250):
                g(x)

    in_threads(4, work)
    with torch.no_grad():
        assert g(x).item() == 1001.0  # 1000 increments, then this one


def test_each_thread_reads_its_own_tagged_value_and_iterations() -> None:
    g = (
        fl.Flow(nn.Identity())
        .tag("seen")
        .loop(lambda s: s - 1)
        .until(lambda s: (s[:, 0] <= 0).double(), max_iter=50)
        .tag("loop")
        .build()
    )
    wrong: list[str] = []

    def work(k: int) -> None:
        for i in range(300):
            value = float(k * 10 + i % 7)
            x = torch.full((2, 1), value)
            g(x)
            seen = g.tagged("seen")
            counts = g.iterations("loop")
            if seen is None or seen[0, 0].item() != value:
                wrong.append(f"thread {k} read tagged {seen} after calling with {value}")
            expected = max(1, int(value))
            if counts is None or counts.tolist() != [expected, expected]:
                wrong.append(f"thread {k} read iterations {counts}, expected {expected}")

    in_threads(4, work)
    assert wrong == []


def test_a_graph_without_state_is_not_locked() -> None:
    g = fl.Flow(nn.Linear(2, 2)).build()
    assert g._guard is None
    stateful = fl.Flow(SlowAdd()).using("h").tag("h").build()
    assert stateful._guard is not None
    outer = fl.Flow(nn.Identity()).through(stateful).build()
    assert outer._guard is not None  # a nested graph's state makes the outer call stateful


def test_a_copy_of_a_stateful_graph_has_its_own_lock_and_runs() -> None:
    g = fl.Flow(SlowAdd()).using("count").tag("count").build()
    g(torch.zeros(1))
    twin = copy.deepcopy(g)
    assert twin._guard is not None
    assert g._guard is not None
    assert twin._guard.lock is not g._guard.lock
    assert twin(torch.zeros(1)).item() == 2.0
    buffer = io.BytesIO()
    torch.save(g, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert loaded(torch.zeros(1)).item() == 2.0
    assert loaded.tagged("count").item() == 2.0


def test_two_graphs_sharing_a_stateful_body_never_interleave_its_state() -> None:
    body = fl.Flow(SlowAdd()).using("h").tag("h").build()
    trunk = fl.Flow(nn.Identity()).loop(body).for_(3)
    graphs = [trunk.through(nn.Identity()).build() for _ in range(2)]
    outs: list[float] = []

    def work(k: int) -> None:
        with torch.no_grad():
            for _ in range(30):
                outs.append(float(graphs[k](torch.zeros(1)).sum()))

    in_threads(2, work)
    assert sorted(outs) == [3.0 * i for i in range(1, 61)]  # each call adds 3, none lost
    assert body._guard is not None
    assert body._guard.enclosed == 0
