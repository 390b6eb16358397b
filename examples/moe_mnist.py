"""A mixture of experts with top-k routing on MNIST, against a dense model of the same compute.

    python examples/moe_mnist.py --data ../shared/data/mnist

Both models flatten the digit, project it to ``--dim`` features (Linear + ReLU), apply
a feed-forward block, then ReLU, and classify (Linear to 10). The block differs:

- *mixture*: ``.gate(fl.TopKRouter(dim, experts, k), *experts)``, each expert a
  Linear-ReLU-Linear with ``--hidden`` units; each sample runs its `k` experts only;
- *dense*: one Linear-ReLU-Linear with ``k * hidden`` units, so that each sample costs
  the same multiply-adds as in the mixture (the router aside).

The mixture adds the Switch Transformer's load-balancing loss from its own routing
figures (``g.routing("moe").balance_loss(p)``, weight ``--balance``, with ``p`` the
router's softmax over all experts, so that experts it never chooses still get a
gradient) and collects the per-expert usage every batch (``g.collect_routing("moe")``),
so each epoch reports what share of the samples each expert received. The two models
train epoch by epoch in alternation (same data order, Adam), so that their times per
epoch are paired on a shared machine. The data are the 10,000 MNIST test images: the
first ``--train-size`` train, the next ``--test-size`` test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

import flowdl as fl

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = ROOT.parent / "shared" / "data" / "mnist"


def ffn(dim: int, hidden: int) -> nn.Module:
    return nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(), nn.Linear(hidden, dim))


def build_moe(dim: int = 128, hidden: int = 64, experts: int = 8, k: int = 2) -> fl.Graph:
    """Stem, a top-`k` gate of `experts` feed-forward experts (tag ``"moe"``), read-out."""
    return (
        fl.Flow(nn.Flatten())
        .through(nn.Linear(28 * 28, dim))
        .through(nn.ReLU())
        .tag("stem")
        .gate(fl.TopKRouter(dim, experts, k=k), *[ffn(dim, hidden) for _ in range(experts)])
        .tag("moe")
        .through(nn.ReLU())
        .through(nn.Linear(dim, 10))
        .build()
    )


def build_dense(dim: int = 128, hidden: int = 64, k: int = 2) -> fl.Graph:
    """The same model with one feed-forward block of ``k * hidden`` units."""
    return (
        fl.Flow(nn.Flatten())
        .through(nn.Linear(28 * 28, dim))
        .through(nn.ReLU())
        .through(ffn(dim, k * hidden))
        .through(nn.ReLU())
        .through(nn.Linear(dim, 10))
        .build()
    )


@dataclass
class Run:
    """One model's results, epoch by epoch."""

    name: str
    seconds: list[float] = field(default_factory=list)
    accuracy: list[float] = field(default_factory=list)
    usage: list[list[float]] = field(default_factory=list)  # mixture only: per epoch


@torch.no_grad()
def accuracy(model: nn.Module, loader: DataLoader[tuple[torch.Tensor, torch.Tensor]]) -> float:
    model.eval()
    correct, count = 0, 0
    for images, labels in loader:
        correct += int((model(images).argmax(1) == labels).sum())
        count += len(labels)
    model.train()
    return correct / count


def probabilities(moe: fl.Graph) -> torch.Tensor:
    """The router's softmax over all experts in the last forward (before top-k): the
    ``P_i`` of the balance loss, with a gradient for every expert."""
    router = next(m for m in moe.modules() if isinstance(m, fl.TopKRouter))
    return torch.softmax(router.proj(moe.tagged("stem")), dim=-1)


def train_epoch(
    model: fl.Graph,
    optimizer: torch.optim.Optimizer,
    loader: DataLoader[tuple[torch.Tensor, torch.Tensor]],
    balance: float,
    routed: bool,
) -> float:
    """One epoch; for the mixture, the balance loss and the usage of every batch."""
    start = time.perf_counter()
    for images, labels in loader:
        loss = nn.functional.cross_entropy(model(images), labels)
        if routed:
            usage = model.routing("moe")
            assert usage is not None  # watched since before the first batch
            loss = loss + balance * usage.balance_loss(probabilities(model))
            model.collect_routing("moe")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return time.perf_counter() - start


def compare(
    train_set: Dataset[tuple[torch.Tensor, torch.Tensor]],
    test_set: Dataset[tuple[torch.Tensor, torch.Tensor]],
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 2e-3,
    dim: int = 128,
    hidden: int = 64,
    experts: int = 8,
    k: int = 2,
    balance: float = 0.1,
    seed: int = 0,
    monitor: fl.Monitor | None = None,
) -> tuple[Run, Run, fl.Graph]:
    """Train the mixture and the dense model, alternating epochs; returns both runs and
    the mixture (its routing and trends)."""
    torch.manual_seed(seed)
    moe = build_moe(dim, hidden, experts, k)
    dense = build_dense(dim, hidden, k)
    moe.routing("moe")  # watch the gate from the first batch
    runs = (Run("mixture"), Run("dense"))
    test_loader = DataLoader(test_set, batch_size=500)
    optimizers = [torch.optim.Adam(m.parameters(), lr=lr) for m in (moe, dense)]
    for epoch in range(1, epochs + 1):
        for model, run, optimizer in zip((moe, dense), runs, optimizers, strict=True):
            order = torch.Generator().manual_seed(seed + epoch)  # same order for both
            loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, generator=order)
            routed = model is moe
            run.seconds.append(train_epoch(model, optimizer, loader, balance, routed))
            run.accuracy.append(accuracy(model, test_loader))
        means = moe.flush()
        runs[0].usage.append([means[f"moe/usage/{i}"] for i in range(experts)])
        if monitor is not None:
            metrics = {
                "test_accuracy": runs[0].accuracy[-1],
                "dense_accuracy": runs[1].accuracy[-1],
            }
            monitor.log(epoch, moe, metrics)
            monitor.watch(moe)  # the drawing with this epoch's routing
    return runs[0], runs[1], moe


def report(mixture: Run, dense: Run, k: int) -> str:
    """The results as Markdown: accuracy and seconds per epoch, then usage per expert."""
    lines = ["| epoch | mixture accuracy | dense accuracy | mixture s/epoch | dense s/epoch |"]
    lines.append("|---|---|---|---|---|")
    for i, (a, b, s, t) in enumerate(
        zip(mixture.accuracy, dense.accuracy, mixture.seconds, dense.seconds, strict=True)
    ):
        lines.append(f"| {i + 1} | {a:.4f} | {b:.4f} | {s:.1f} | {t:.1f} |")
    ratios = sorted(s / t for s, t in zip(mixture.seconds, dense.seconds, strict=True))
    median = ratios[len(ratios) // 2]
    lines.append("")
    lines.append(
        f"time per epoch, mixture / dense: median {median:.2f} (range {ratios[0]:.2f}-"
        f"{ratios[-1]:.2f}) over {len(ratios)} paired epochs"
    )
    lines.append("")
    n = len(mixture.usage[0])
    lines.append(f"usage per expert (share of the samples routed to it; they sum to k = {k}):")
    lines.append("")
    lines.append("| epoch | " + " | ".join(f"expert {i}" for i in range(n)) + " |")
    lines.append("|---" * (n + 1) + "|")
    for i, usage in enumerate(mixture.usage):
        lines.append(f"| {i + 1} | " + " | ".join(f"{u:.3f}" for u in usage) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--train-size", type=int, default=8000)
    parser.add_argument("--test-size", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--experts", type=int, default=8)
    parser.add_argument("--k", type=int, default=2)
    parser.add_argument("--balance", type=float, default=0.1, help="balance loss weight")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dashboard", action="store_true", help="serve the live dashboard")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    digits = fl.data.mnist(
        args.data / "t10k-images-idx3-ubyte.gz", args.data / "t10k-labels-idx1-ubyte.gz"
    )
    train_set = Subset(digits, range(args.train_size))
    test_set = Subset(digits, range(args.train_size, args.train_size + args.test_size))
    print(f"{len(train_set)} training and {len(test_set)} test images, {args.threads} threads")
    monitor = None
    if args.dashboard:
        monitor = fl.Monitor(args.epochs, title="MNIST mixture of experts")
        monitor.serve()
    mixture, dense, _ = compare(
        train_set,
        test_set,
        epochs=args.epochs,
        batch_size=args.batch_size,
        experts=args.experts,
        k=args.k,
        balance=args.balance,
        seed=args.seed,
        monitor=monitor,
    )
    if monitor is not None:
        monitor.finish()
    print(report(mixture, dense, args.k))
    return 0


if __name__ == "__main__":
    sys.exit(main())
