"""A trend-driven run stopped at epoch k and resumed from its checkpoint (new objects) takes
the same decisions and ends bit-identical to the run that never stopped; the observation
history (every graph of the tree, timings, clock) and the monitor's history come back."""

from __future__ import annotations

import io
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import flowdl as fl

EPOCHS = 16


def build() -> fl.Graph:
    torch.manual_seed(0)
    return (
        fl.Flow(nn.Linear(3, 4))
        .through(fl.Flow(nn.Linear(4, 4)).through(nn.Tanh()).label("encoder").build())
        .through(nn.Linear(4, 1))
        .tag("out")
        .build()
    )


class Clock:
    """A deterministic clock for the monitor: each call is 1.5 s after the previous."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1.5
        return self.now


def data(epoch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    generator = torch.Generator().manual_seed(epoch)
    x = torch.randn(4, 16, 3, generator=generator)
    return [(xb, xb.sum(dim=1, keepdim=True) * 0.3) for xb in x]


def run(path: Path, stop_at: int | None = None, resume: bool = False) -> dict[str, Any]:
    """Train until the trend says stop; decisions by `g.trend`; save every epoch."""
    g = build()
    optimizer = torch.optim.SGD(g.parameters(), lr=0.05)
    monitor = fl.Monitor(EPOCHS, output=io.StringIO(), resources=False, clock=Clock())
    decisions: list[tuple[int, str]] = []
    first = 1
    if resume:
        report = fl.load_checkpoint(path, g, optimizer, monitor=monitor)
        assert report.epoch is not None
        first = report.epoch + 1
        decisions = [tuple(d) for d in report.extra["decisions"]]  # type: ignore[misc]
    inner = g.subgraph("encoder")
    for epoch in range(first, EPOCHS + 1):
        for x, y in data(epoch):
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(g(x), y)
            loss.backward()
            optimizer.step()
            g.record("loss", loss.detach())
            inner.record("scale", float(x.abs().mean()))
        with torch.no_grad():
            x, y = data(100)[0]
            g.record("val_loss", float(nn.functional.mse_loss(g(x), y)))
        g.flush()
        monitor.log(epoch, g)
        trend = g.trend("val_loss")
        if len(trend.values) >= 3 and trend.stalled(3, 0.004):
            for group in optimizer.param_groups:
                group["lr"] *= 0.5
            decisions.append((epoch, "drop"))
        if len(trend.values) >= 3 and trend.converged(3, 2e-6):
            decisions.append((epoch, "stop"))
            break
        if epoch == stop_at:
            fl.save_checkpoint(path, g, optimizer, epoch=epoch, monitor=monitor,
                               decisions=[list(d) for d in decisions])  # fmt: skip
            return {}
    return {
        "decisions": decisions,
        "weights": {k: v.clone() for k, v in g.state_dict().items()},
        "val_loss": g.trend("val_loss").values,
        "scale": g.trend_at("encoder.scale").values,
        "history": monitor.history,
        "flushes": g.subgraph("encoder")._observation.clock.count,  # type: ignore[attr-defined]
    }


@pytest.mark.parametrize("k", [3, 12])
def test_a_trend_driven_run_resumes_exactly(tmp_path: Path, k: int) -> None:
    path = tmp_path / "run.safetensors"
    whole = run(tmp_path / "whole.safetensors")
    kinds = [kind for _, kind in whole["decisions"]]
    assert "drop" in kinds  # the trend decided things
    assert kinds[-1] == "stop"
    assert whole["decisions"][-1][0] < EPOCHS
    run(path, stop_at=k)
    resumed = run(path, resume=True)
    assert resumed["decisions"] == whole["decisions"]
    assert resumed["val_loss"] == whole["val_loss"]
    assert resumed["scale"] == whole["scale"]
    assert resumed["flushes"] == whole["flushes"]
    for key, value in whole["weights"].items():
        assert torch.equal(resumed["weights"][key], value), key
    assert [r["epoch"] for r in resumed["history"]] == [r["epoch"] for r in whole["history"]]
    for mine, theirs in zip(resumed["history"], whole["history"], strict=True):
        assert mine["val_loss"] == theirs["val_loss"]


def test_trends_timings_and_clock_answer_as_before_the_save(tmp_path: Path) -> None:
    g = build()
    g.enable_profiling()
    for value in (3.0, 2.0, float("nan"), 1.0):
        g(torch.randn(2, 3))
        g.collect_timings("out")
        g.record("loss", value)
        g.subgraph("encoder").record("_aux", value * 2)
        g.flush()
        g.flush_timings()
    g.record("pending", 1.0)  # buffered, not flushed: not history (its name is known)
    path = tmp_path / "h.safetensors"
    fl.save_checkpoint(path, g)
    state = g._observation  # type: ignore[attr-defined]
    fresh = build()
    fl.load_checkpoint(path, fresh)
    restored = fresh._observation  # type: ignore[attr-defined]
    assert fresh.trend("loss").values[:2] == (3.0, 2.0)
    assert math.isnan(fresh.trend("loss").values[2])
    assert fresh.trend("loss").latest == g.trend("loss").latest
    assert fresh.subgraph("encoder").trend("_aux").values[-1] == 2.0
    assert fresh.timing_trend("out").values == g.timing_trend("out").values
    assert restored.clock.count == state.clock.count == 4
    assert restored.clock.epoch_durations() == pytest.approx(state.clock.epoch_durations())
    assert restored.store.knows("loss")
    assert restored.clock.elapsed() >= state.clock.ends[-1] - state.clock.start


def test_a_monitor_is_needed_in_the_checkpoint_to_restore_one(tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    fl.save_checkpoint(path, build())
    monitor = fl.Monitor(3, output=io.StringIO(), resources=False)
    with pytest.raises(fl.CheckpointError, match="no monitor history"):
        fl.load_checkpoint(path, build(), monitor=monitor)
    logged = fl.Monitor(3, output=io.StringIO(), resources=False)
    logged.log(1, {"loss": 1.0})
    fl.save_checkpoint(path, build(), monitor=logged)
    logged.log(2, {"loss": 0.5})
    with pytest.raises(fl.CheckpointError, match="logged epochs already"):
        fl.load_checkpoint(path, build(), monitor=logged)
    small = fl.Monitor(3, output=io.StringIO(), resources=False)
    fl.load_checkpoint(path, build(), monitor=small)
    assert [r["epoch"] for r in small.history] == [1]


def test_an_extra_named_monitor_still_saves_as_an_extra(tmp_path: Path) -> None:
    path = tmp_path / "x.safetensors"
    fl.save_checkpoint(path, build(), monitor="tensorboard")  # type: ignore[arg-type]
    assert fl.checkpoint_info(path).extra == {"monitor": "tensorboard"}


@pytest.mark.parametrize("first", [0, 1])
def test_a_resumed_monitor_goes_on_counting_as_the_run_did(tmp_path: Path, first: int) -> None:
    # range(epochs) or range(1, epochs + 1): the resumed monitor must take the next epoch
    # in the same numbering, and refuse one already logged.
    path = tmp_path / "m.safetensors"
    before = fl.Monitor(4, output=io.StringIO(), resources=False)
    before.log(first, {"loss": 1.0})
    before.log(first + 1, {"loss": 0.5})
    fl.save_checkpoint(path, build(), monitor=before)
    after = fl.Monitor(4, output=io.StringIO(), resources=False)
    fl.load_checkpoint(path, build(), monitor=after)
    with pytest.raises(ValueError, match="out of order"):
        after.log(first + 1, {"loss": 0.4})
    after.log(first + 2, {"loss": 0.25})
    assert [r["epoch"] for r in after.history] == [1, 2, 3]
    after.log(first + 3, {"loss": 0.125})
    with pytest.raises(ValueError, match="out of order"):
        after.log(first + 4, {"loss": 0.1})
