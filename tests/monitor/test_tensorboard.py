"""Monitor.to_tensorboard: the event files, read back with TensorBoard's own reader."""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import flowdl as fl
from tests.monitor.conftest import FakeClock

event_accumulator = pytest.importorskip(
    "tensorboard.backend.event_processing.event_accumulator",
    reason="tensorboard is in the test extra: pip install -e '.[test]'",
)


def read(logdir: Path) -> event_accumulator.EventAccumulator:
    accumulator = event_accumulator.EventAccumulator(
        str(logdir), size_guidance={event_accumulator.SCALARS: 0}
    )
    accumulator.Reload()
    return accumulator


def scalars(accumulator: event_accumulator.EventAccumulator, tag: str) -> list[tuple[int, float]]:
    return [(event.step, event.value) for event in accumulator.Scalars(tag)]


def profiled_model() -> fl.Graph:
    return fl.Flow(nn.Linear(2, 3)).tag("hidden").through(nn.Tanh()).tag("out").build()


def test_every_metric_timing_and_resource_is_a_scalar_at_each_epoch(
    tmp_path: Path, clock: FakeClock
) -> None:
    model = profiled_model()
    model.enable_profiling()
    monitor = fl.Monitor(3, output=io.StringIO(), clock=clock)
    monitor.watch(model)
    board = monitor.to_tensorboard(tmp_path)
    for epoch in range(3):  # counted from 0: the steps are 1, 2, 3 as shown
        model(torch.randn(4, 2))
        model.record("loss", 1.0 / (epoch + 1))
        model.collect_timings()
        model.flush()
        model.flush_timings()
        clock.advance(2.0)
        monitor.log(epoch, model, {"lr": 0.1 * (epoch + 1)})
    monitor.finish()
    assert board.closed

    accumulator = read(tmp_path)
    tags = set(accumulator.Tags()["scalars"])
    assert scalars(accumulator, "loss") == [
        (1, pytest.approx(1.0)),
        (2, pytest.approx(0.5)),
        (3, pytest.approx(1 / 3)),
    ]
    assert scalars(accumulator, "lr") == [
        (1, pytest.approx(0.1)),
        (2, pytest.approx(0.2)),
        (3, pytest.approx(0.3)),
    ]
    assert scalars(accumulator, "time/epoch_s") == [(1, 2.0), (2, 2.0), (3, 2.0)]
    history = monitor.history
    for name in ("cpu_percent", "ram_used_bytes"):
        if name in history[0]:
            assert [value for _, value in scalars(accumulator, f"resources/{name}")] == [
                pytest.approx(row[name], rel=1e-6) for row in history
            ]
    assert any(tag.startswith("resources/") for tag in tags)
    for tag in ("hidden", "out"):
        written = scalars(accumulator, f"timing/{tag}")
        assert [step for step, _ in written] == [1, 2, 3]
        assert [value for _, value in written] == [
            pytest.approx(v, rel=1e-6) for v in model.timing_trend(tag).values
        ]
    texts = accumulator.Tags()["tensors"]
    assert any(tag.startswith("graph/dot") for tag in texts)
    if shutil.which("dot") is not None:
        images = accumulator.Tags()["images"]
        assert images == ["graph/drawing"]
        png = accumulator.Images("graph/drawing")[0]
        assert png.encoded_image_string.startswith(b"\x89PNG")
        assert png.width > 0
        assert png.height > 0


def test_the_graph_text_is_the_dot_drawing(tmp_path: Path, clock: FakeClock) -> None:
    model = profiled_model()
    monitor = fl.Monitor(1, output=io.StringIO(), resources=False, clock=clock)
    with monitor.to_tensorboard(tmp_path, graph=model):
        monitor.log(1, {"loss": 0.5})
    accumulator = read(tmp_path)
    tag = next(t for t in accumulator.Tags()["tensors"] if t.startswith("graph/dot"))
    text = accumulator.Tensors(tag)[0].tensor_proto.string_val[0].decode()
    assert [line.strip() for line in text.splitlines()] == [
        line.strip() for line in model.dot().splitlines()
    ]


def test_a_closed_writer_writes_nothing_more(tmp_path: Path, clock: FakeClock) -> None:
    monitor = fl.Monitor(3, output=io.StringIO(), resources=False, clock=clock)
    first = monitor.to_tensorboard(tmp_path / "a")
    second = monitor.to_tensorboard(tmp_path / "b")
    monitor.log(1, {"loss": 1.0})
    first.remove()
    first.close()  # twice is harmless
    monitor.log(2, {"loss": 0.5})
    monitor.finish()
    assert [step for step, _ in scalars(read(tmp_path / "a"), "loss")] == [1]
    assert [step for step, _ in scalars(read(tmp_path / "b"), "loss")] == [1, 2]
    assert "closed" in repr(second)


def test_without_tensorboard_the_error_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    monitor = fl.Monitor(1, output=io.StringIO(), resources=False)
    with pytest.raises(ImportError, match=r'pip install "flowdl\[tensorboard\]"'):
        monitor.to_tensorboard(tmp_path)
