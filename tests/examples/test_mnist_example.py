"""examples/mnist.py: the SimpleCNN, its training function and main(), on generated digits."""

from __future__ import annotations

import gzip
import io
import urllib.error
import urllib.request
from pathlib import Path
from types import ModuleType

import pytest
import torch

import flowdl as fl
from flowdl._format import format_metric
from flowdl.data import ImageDataset
from tests.examples.support import load_example


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return load_example("mnist")


def squares(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Easy digits: class k is a bright 6x6 square at grid cell k, on faint noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=generator)
    images = torch.randint(0, 40, (n, 1, 28, 28), generator=generator, dtype=torch.uint8)
    for i, k in enumerate(labels.tolist()):
        row, col = 2 + 9 * (k // 4), 1 + 7 * (k % 4)
        images[i, 0, row : row + 6, col : col + 6] = 230
    return images, labels


def test_the_model_is_go_torchs_simple_cnn(example: ModuleType) -> None:
    model = example.build_model()
    assert isinstance(model, fl.Graph)
    shapes = [tuple(p.shape) for p in model.parameters()]
    assert shapes == [(16, 1, 5, 5), (16,), (32, 16, 5, 5), (32,), (128, 1568), (128,),
                      (10, 128), (10,)]  # fmt: skip
    assert model(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_training_learns_generated_digits(example: ModuleType) -> None:
    torch.manual_seed(0)
    train_set = ImageDataset(*squares(300, seed=1), classes=tuple("0123456789"))
    test_set = ImageDataset(*squares(100, seed=2), classes=tuple("0123456789"))
    output = io.StringIO()
    monitor = fl.Monitor(2, output=output, resources=False)
    model = example.build_model()
    history, optimizer, scheduler = example.train(
        model, train_set, test_set,
        epochs=2, batch_size=32, lr=3e-3, monitor=monitor,
    )  # fmt: skip
    assert [e.epoch for e in history] == [1, 2]
    assert history[1].train_loss < history[0].train_loss
    assert history[-1].test_accuracy >= 0.9
    assert all(e.seconds > 0 for e in history)
    # The graph's history holds the epochs' means; the monitor printed them, and finished.
    assert model.trend("train_loss").values == tuple(e.train_loss for e in history)
    assert model.trend("test_accuracy").values == tuple(e.test_accuracy for e in history)
    lines = output.getvalue().splitlines()
    assert len(lines) == 3
    for line, epoch in zip(lines, history, strict=False):
        assert line.startswith(
            f"epoch {epoch.epoch}/2  train_loss={format_metric(epoch.train_loss)}  "
            f"test_loss={format_metric(epoch.test_loss)}  "
            f"test_accuracy={format_metric(epoch.test_accuracy)}  lr="
        )
    assert monitor.finished
    assert lines[2].startswith("done: 2/2 epochs in ")
    # The rate at each epoch's end: a fresh one-cycle schedule stepped 10 and 20 times.
    weight = torch.nn.Parameter(torch.zeros(1))
    fresh = torch.optim.lr_scheduler.OneCycleLR(
        torch.optim.Adam([weight], lr=3e-3), max_lr=3e-3, total_steps=20
    )
    rates = []
    for step in range(1, 21):
        fresh.optimizer.step()
        fresh.step()
        if step % 10 == 0:
            rates.append(fresh.get_last_lr()[0])
    assert [row["lr"] for row in monitor.history] == pytest.approx(rates, rel=1e-12)
    assert scheduler.last_epoch == 2 * 10  # one scheduler step per batch: 300 / 32 -> 10
    assert optimizer.state_dict()["state"]  # Adam has moments to checkpoint


def test_main_trains_saves_and_reloads_to_the_same_accuracy(
    example: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    images, labels = squares(260, seed=3)
    header = b"".join(v.to_bytes(4, "big") for v in (2051, 260, 28, 28))
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(
        gzip.compress(header + bytes(images.flatten().tolist()))
    )
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(
        gzip.compress((2049).to_bytes(4, "big") + (260).to_bytes(4, "big")
                      + bytes(labels.tolist()))
    )  # fmt: skip
    checkpoint = tmp_path / "mnist.safetensors"
    arguments = ["--data", str(tmp_path), "--epochs", "1", "--train-size", "200"]
    arguments += ["--batch-size", "50", "--checkpoint", str(checkpoint), "--threads", "1"]
    arguments += ["--dashboard"]
    threads = torch.get_num_threads()
    try:
        code = example.main(arguments)
    finally:
        torch.set_num_threads(threads)  # main() sets it for the whole process
    out = capsys.readouterr().out
    assert code == 0
    assert "200 training and 60 test images, 1 threads" in out
    lines = out.splitlines()
    url = next(line for line in lines if line.startswith("dashboard: http://127.0.0.1:"))[11:]
    assert lines.index("dashboard: " + url) < next(
        i for i, line in enumerate(lines) if line.startswith("epoch 1/1  train_loss=")
    )
    assert any(line.startswith("done: 1/1 epochs in ") for line in lines)
    # training finished the monitor, which stopped the server
    with pytest.raises(urllib.error.URLError, match="refused"):
        urllib.request.urlopen(url, timeout=5)
    assert "reloaded: test accuracy" in out
    assert out.rstrip().endswith("the same")
    info = fl.checkpoint_info(checkpoint)
    assert info.epoch == 1
    assert (info.optimizer, info.scheduler) == ("Adam", "OneCycleLR")
    assert 0.0 <= info.extra["test_accuracy"] <= 1.0
