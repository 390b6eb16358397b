"""Observation leaves the module alone: state_dict, copies, pickles, torch.compile, DDP."""

from __future__ import annotations

import copy
import io
from pathlib import Path

import torch
from torch import nn

import flowdl as fl
from tests.ranks import single_process_group


def observed() -> fl.Graph:
    encoder = fl.Flow(nn.Linear(3, 4)).tag("hidden").label("encoder").build()
    g = fl.Flow(encoder).through(nn.ReLU()).through(nn.Linear(4, 1)).tag("out").build()
    g.on_flush(lambda means: None)  # a lambda: not picklable, so it must not travel
    g.on_log(lambda values: None)
    for _ in range(3):
        g(torch.randn(2, 3))
        g.collect("out")
        g.collect_at("encoder.hidden")
        g.record("loss", 0.5)
        g.flush()
    g(torch.randn(2, 3))
    g.collect("out")  # something buffered, too
    return g


def test_observation_is_not_in_the_state_dict() -> None:
    torch.manual_seed(0)
    plain = fl.Flow(fl.Flow(nn.Linear(3, 4)).tag("hidden").label("encoder").build())
    fresh = plain.through(nn.ReLU()).through(nn.Linear(4, 1)).tag("out").build()
    g = observed()
    assert list(g.state_dict()) == list(fresh.state_dict())
    assert all(isinstance(v, torch.Tensor) for v in g.state_dict().values())
    fresh.load_state_dict(g.state_dict())


def test_deepcopy_starts_without_observation_and_leaves_the_original() -> None:
    g = observed()
    clone = copy.deepcopy(g)
    assert clone.latest_metrics() == {}
    assert clone.flush_count == 0
    assert clone.elapsed == 0.0
    assert clone.collected("out") == []
    assert clone.subgraph("encoder").latest_metrics() == {}
    assert g.flush_count == 3
    assert len(g.trend("out")) == 3
    assert g.collected("out") != []
    x = torch.randn(2, 3)
    torch.testing.assert_close(clone(x), g(x))
    clone.collect("out")
    clone.flush()
    assert clone.flush_count == 1
    assert g.flush_count == 3


def test_pickling_a_graph_with_hooks_and_histories() -> None:
    g = observed()
    buffer = io.BytesIO()
    torch.save(g, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    assert loaded.latest_metrics() == {}
    x = torch.randn(2, 3)
    torch.testing.assert_close(loaded(x), g(x))


def test_torch_compile_runs_the_observed_graph_without_graph_breaks() -> None:
    g = fl.Flow(nn.Linear(3, 3)).tag("h").through(nn.Tanh()).tag("out").build().eval()
    compiled = torch.compile(g, backend="eager", fullgraph=True)
    x = torch.randn(4, 3)
    for _ in range(3):  # compiled from the first call on: the clock starts at collect
        y = compiled(x)
        g.collect("h", "out")
        g.record("loss", y.pow(2).mean())
        g.flush()
    assert len(g.trend("out")) == 3
    torch.testing.assert_close(g.tagged("out"), y)
    assert g.trend("out").latest == torch.tanh(g.tagged("h")).mean().item()
    assert g.flush_count == 3
    assert g.elapsed > 0


def test_fast_mode_with_observation() -> None:
    g = fl.Flow(nn.Linear(3, 3)).tag("h").through(nn.Tanh()).tag("out").build()
    g.compile(backend="eager")
    g(torch.randn(2, 3))
    g.collect("h", "out")
    assert set(g.flush()) == {"h", "out"}


def test_distributed_data_parallel_with_observation(tmp_path: Path) -> None:
    with single_process_group(tmp_path):
        g = observed()
        ddp = nn.parallel.DistributedDataParallel(g)
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1)
        for _ in range(3):
            loss = ddp(torch.randn(4, 3)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            g.record("loss", loss)
            g.collect("out")
            g.collect_at("encoder.hidden")
        flushed = g.flush()  # one rank: nothing to average
        assert set(flushed) == {"out", "loss", "encoder.hidden"}
        assert g.flush_count == 4
        assert list(ddp.module.state_dict()) == list(g.state_dict())
