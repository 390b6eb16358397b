"""examples/moe_mnist.py: a top-k mixture of experts against a dense model of the same compute."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

from flowdl.data import ImageDataset
from tests.examples.support import load_example

DATA = Path(
    os.environ.get("FLOWDL_DATA_DIR", Path(__file__).resolve().parents[3] / "shared" / "data")
)


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return load_example("moe_mnist")


def squares(n: int, seed: int) -> ImageDataset:
    """Easy digits: class k is a bright 6x6 square at grid cell k, on faint noise."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=generator)
    images = torch.randint(0, 40, (n, 1, 28, 28), generator=generator, dtype=torch.uint8)
    for i, k in enumerate(labels.tolist()):
        row, col = 2 + 9 * (k // 4), 1 + 7 * (k % 4)
        images[i, 0, row : row + 6, col : col + 6] = 230
    return ImageDataset(images, labels, classes=tuple("0123456789"))


def test_dense_model_costs_what_k_experts_cost(example: ModuleType) -> None:
    moe = example.build_moe(dim=16, hidden=8, experts=4, k=2)
    dense = example.build_dense(dim=16, hidden=8, k=2)
    gates = [m for m in moe.modules() if type(m).__name__ == "Gate"]
    assert len(gates) == 1
    expert = sum(m.in_features * m.out_features for m in gates[0].experts[0].modules()
                 if isinstance(m, nn.Linear))  # fmt: skip
    block = next(m for m in dense.modules() if isinstance(m, nn.Sequential))
    dense_block = sum(m.in_features * m.out_features for m in block.modules()
                      if isinstance(m, nn.Linear))  # fmt: skip
    assert dense_block == 2 * expert
    x = torch.zeros(3, 1, 28, 28)
    assert moe(x).shape == dense(x).shape == (3, 10)


def test_compare_trains_both_and_reports_usage(example: ModuleType) -> None:
    mixture, dense, moe = example.compare(
        squares(256, seed=1), squares(100, seed=2),
        epochs=2, batch_size=32, dim=16, hidden=8, experts=4, k=2,
    )  # fmt: skip
    for run in (mixture, dense):
        assert len(run.seconds) == len(run.accuracy) == 2
        assert all(s > 0 for s in run.seconds)
        assert all(0.0 <= a <= 1.0 for a in run.accuracy)
    assert dense.usage == []
    assert len(mixture.usage) == 2
    for usage in mixture.usage:  # top-2: each sample runs two experts
        assert sum(usage) == pytest.approx(2.0)
    # the flushed usage is the routing trend of the graph
    assert moe.trend("moe/usage/0").values == tuple(u[0] for u in mixture.usage)
    text = example.report(mixture, dense, 2)
    assert "| epoch | mixture accuracy | dense accuracy |" in text
    assert "mixture / dense: median" in text


def test_main_on_a_tiny_subset_of_real_digits(
    example: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    if not (DATA / "mnist").is_dir():
        pytest.skip(f"no real data: {DATA / 'mnist'} does not exist (set FLOWDL_DATA_DIR)")
    threads = torch.get_num_threads()
    try:
        code = example.main(["--data", str(DATA / "mnist"), "--epochs", "1", "--train-size",
                             "200", "--test-size", "100", "--threads", "1"])  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert code == 0
    assert "200 training and 100 test images" in out
    assert "| 1 | " in out
