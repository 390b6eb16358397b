"""Train go-torch's SimpleCNN on real MNIST digits, save a checkpoint, reload it.

    python examples/mnist.py --data ../shared/data/mnist

The data are the 10,000 MNIST test images (``t10k-*-ubyte.gz``): the first 8,000
train, the last 2,000 test. The model is built with flowdl's builder; the training
loop is plain PyTorch (a `DataLoader`, Adam, a one-cycle learning-rate schedule);
the graph records the losses and the accuracy (`g.record`, `g.flush`) and `fl.Monitor`
prints one line per epoch (``--dashboard`` also serves the live dashboard, with the
model's drawing, on 127.0.0.1 while it trains). After training, the model is saved
with `fl.save_checkpoint`, loaded into a fresh model with `fl.load_checkpoint`, and
evaluated again.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

import flowdl as fl
from flowdl._format import format_duration

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist"
TRAIN_SIZE = 8_000


def build_model() -> fl.Graph:
    """go-torch's SimpleCNN: two conv/ReLU/pool stages, then two linear layers."""
    return (
        fl.Flow(nn.Conv2d(1, 16, kernel_size=5, padding=2))  # [B, 16, 28, 28]
        .through(nn.ReLU())
        .through(nn.MaxPool2d(2))  # [B, 16, 14, 14]
        .through(nn.Conv2d(16, 32, kernel_size=5, padding=2))  # [B, 32, 14, 14]
        .through(nn.ReLU())
        .through(nn.MaxPool2d(2))  # [B, 32, 7, 7]
        .through(nn.Flatten())  # [B, 1568]
        .through(nn.Linear(32 * 7 * 7, 128))
        .through(nn.ReLU())
        .through(nn.Linear(128, 10))
        .build()
    )


@dataclass
class Epoch:
    """What one epoch measured."""

    epoch: int
    train_loss: float
    test_loss: float
    test_accuracy: float
    seconds: float


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: DataLoader[tuple[torch.Tensor, torch.Tensor]]
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` over `loader`."""
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    for images, labels in loader:
        logits = model(images)
        total_loss += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        correct += int((logits.argmax(dim=1) == labels).sum())
        count += len(labels)
    return total_loss / count, correct / count


def train(
    model: fl.Graph,
    train_set: Dataset[tuple[torch.Tensor, torch.Tensor]],
    test_set: Dataset[tuple[torch.Tensor, torch.Tensor]],
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int = 0,
    monitor: fl.Monitor | None = None,
) -> tuple[list[Epoch], torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
    """Train with Adam and a one-cycle schedule; evaluate on `test_set` after each epoch.

    The graph records each batch's loss (`g.record`, no wait for the device) and
    the epoch's test loss and accuracy; `g.flush` turns them into one point each, and
    `monitor` prints the epoch's line (metrics, time, ETA) with the learning rate at
    the epoch's end. `train` finishes the monitor (its summary line; a dashboard it
    serves stops).

    Args:
        monitor: the monitor of the run (default: a new ``fl.Monitor(epochs)``).

    Returns the per-epoch results, the optimizer and the scheduler (to checkpoint them).
    """
    generator = torch.Generator().manual_seed(seed)
    train_loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=generator)
    test_loader = DataLoader(test_set, batch_size=500)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * len(train_loader)
    )
    monitor = monitor if monitor is not None else fl.Monitor(epochs, title="MNIST SimpleCNN")
    history = []
    with monitor:
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            model.train()
            for images, labels in train_loader:
                loss = nn.functional.cross_entropy(model(images), labels)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                model.record("train_loss", loss)
            test_loss, accuracy = evaluate(model, test_loader)
            model.record("test_loss", test_loss)
            model.record("test_accuracy", accuracy)
            means = model.flush()
            seconds = time.perf_counter() - start
            history.append(Epoch(epoch, means["train_loss"], test_loss, accuracy, seconds))
            monitor.log(epoch, model, {"lr": scheduler.get_last_lr()[0]})
    return history, optimizer, scheduler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data",
        type=Path,
        default=DEFAULT_DATA,
        help=f"folder with t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz "
        f"(default: {DEFAULT_DATA})",
    )
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    parser.add_argument(
        "--threads",
        type=int,
        default=min(2, os.cpu_count() or 1),
        help="CPU threads for torch (default: 2 at most)",
    )
    parser.add_argument(
        "--train-size",
        type=int,
        default=TRAIN_SIZE,
        help="images to train on, from the first; the rest test",
    )
    parser.add_argument("--checkpoint", type=Path, default=Path("mnist.safetensors"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--dashboard", action="store_true", help="serve the live dashboard on 127.0.0.1"
    )
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    digits = fl.data.mnist(
        args.data / "t10k-images-idx3-ubyte.gz", args.data / "t10k-labels-idx1-ubyte.gz"
    )
    train_set = Subset(digits, range(args.train_size))
    test_set = Subset(digits, range(args.train_size, len(digits)))
    print(f"{len(train_set)} training and {len(test_set)} test images, {args.threads} threads")

    model = build_model()
    monitor = fl.Monitor(args.epochs, title="MNIST SimpleCNN")
    if args.dashboard:
        monitor.watch(model)
        monitor.serve()
    start = time.perf_counter()
    history, optimizer, scheduler = train(
        model,
        train_set,
        test_set,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        monitor=monitor,
    )
    seconds = time.perf_counter() - start
    final = history[-1].test_accuracy
    print(f"test accuracy {final:.2%} after {args.epochs} epochs in {format_duration(seconds)}")

    fl.save_checkpoint(
        args.checkpoint,
        model,
        optimizer,
        scheduler,
        epoch=args.epochs,
        test_accuracy=final,
        seconds=seconds,
    )
    fresh = build_model()
    report = fl.load_checkpoint(args.checkpoint, fresh)
    _, reloaded = evaluate(fresh, DataLoader(test_set, batch_size=500))
    same = "the same" if reloaded == final else "DIFFERENT"
    print(
        f"saved {args.checkpoint} ({len(report.loaded)} tensors, epoch {report.epoch}); "
        f"reloaded: test accuracy {reloaded:.2%}, {same}"
    )
    return 0 if reloaded == final else 1


if __name__ == "__main__":
    sys.exit(main())
