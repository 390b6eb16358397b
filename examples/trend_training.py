"""Let the loss trend decide: lower the learning rate when it stalls, stop when it converges.

    python examples/trend_training.py [--epochs 60] [--samples 2048] [--seed 0]

A residual MLP (a flowdl graph: two pre-norm residual blocks, tagged) learns a
wavy surface ``y = sin(5 x0) cos(4 x1) + 0.3 x0`` from noisy samples, with SGD and
momentum. It is trained twice, from the same initial weights on the same batches in
the same order; only the rule that changes the learning rate and stops differs:

- **trend**: every epoch the graph records the validation loss and its logarithm
  (`g.record`, `g.flush`), and the rule asks `g.trend("log_val_loss")` two
  questions over the last ``--window`` epochs: *converged* (the variance of the
  window below ``--converge-tol``) stops; *stalled* (the least-squares slope
  below ``--stall-tol`` in magnitude) divides the rate by ten. Epochs of the
  warm-up, and epochs trained at an earlier rate, never enter a window.
- **plateau**: PyTorch's `torch.optim.lr_scheduler.ReduceLROnPlateau`
  (``patience=--patience``, its default relative threshold 1e-4) divides the rate
  by ten, and early stopping written by hand stops after ``--stop-patience``
  epochs without a new best (with the same threshold).

`fl.Monitor` prints one line per epoch for each run; at the end a table compares
the runs: epochs, rate changes, losses. Everything is seeded: a run prints the same
numbers every time (on the same machine and PyTorch). It takes a few seconds on two
CPU cores.

Why the logarithm: a trend's tolerances are absolute, in the units of what was
recorded. Recorded as ``ln(loss)``, the slope is the relative change per epoch
(``--stall-tol 0.01``: "less than 1% per epoch") and the rule does not depend on the
scale of the loss, as ReduceLROnPlateau's relative threshold does not. The trend
queries and the comparison with ReduceLROnPlateau are explained in
``docs/observation.md`` ("A training loop that decides for itself"); what this run
shows is in its section "The two rules in a real run".
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TextIO

import torch
from torch import Tensor, nn
from torch.nn import functional

import flowdl as fl
from flowdl._format import format_duration, format_metric

NOISE = 0.05
"""Standard deviation of the noise on the targets: no model's loss goes below 0.0025."""


# -- the data and the model ---------------------------------------------------------------


@dataclass
class Data:
    """Training and validation samples: inputs ``[N, 2]``, targets ``[N, 1]``."""

    train_x: Tensor
    train_y: Tensor
    validation_x: Tensor
    validation_y: Tensor


def surface(x: Tensor) -> Tensor:
    """The function to learn, ``sin(5 x0) cos(4 x1) + 0.3 x0``, for ``x`` of shape ``[N, 2]``."""
    return torch.sin(5 * x[:, :1]) * torch.cos(4 * x[:, 1:]) + 0.3 * x[:, :1]


def make_data(samples: int, validation: int, seed: int) -> Data:
    """`samples` training and `validation` validation points, uniform in ``[-1, 1]²``, noisy."""
    generator = torch.Generator().manual_seed(seed)

    def draw(n: int) -> tuple[Tensor, Tensor]:
        x = torch.rand(n, 2, generator=generator) * 2 - 1
        return x, surface(x) + NOISE * torch.randn(n, 1, generator=generator)

    return Data(*draw(samples), *draw(validation))


def residual_block(width: int) -> fl.Graph:
    """A pre-norm block ``LayerNorm -> Linear -> GELU``, added to its input by ``.also``."""
    return fl.Flow(nn.LayerNorm(width)).through(nn.Linear(width, width)).through(nn.GELU()).build()


def build_model(width: int = 32) -> fl.Graph:
    """The regressor: a linear embedding, two residual blocks (tagged), a linear head."""
    return (
        fl.Flow(nn.Linear(2, width))
        .through(nn.GELU())
        .also(residual_block(width))
        .tag("block_1")
        .also(residual_block(width))
        .tag("block_2")
        .through(nn.Linear(width, 1))
        .label("regressor")
        .build()
    )


# -- the two rules --------------------------------------------------------------------------


@dataclass
class Decision:
    """What a rule decided after an epoch: ``"lower"``, ``"stop"`` or nothing (``""``)."""

    action: str = ""
    reason: str = ""


class Rule(Protocol):
    """A rule reads the epoch's results, may change the optimizer's rate, and may stop."""

    name: str

    def decide(self, model: fl.Graph, optimizer: torch.optim.Optimizer) -> Decision: ...


def learning_rate(optimizer: torch.optim.Optimizer) -> float:
    """The rate of the optimizer's first parameter group."""
    return float(optimizer.param_groups[0]["lr"])


@dataclass
class TrendRule:
    """Stop when ``ln(val_loss)`` converged, lower the rate when it stalled.

    Decisions look only at full windows of epochs after the warm-up and trained at
    the current rate: after `warmup` epochs, and after each change of rate, the rule
    waits `window` epochs. The window rule of `fl.Trend` would otherwise look at
    fewer values (two, at the second epoch), or at epochs of another rate.

    Args:
        window: epochs in a window.
        warmup: first epochs that never enter a window.
        stall_tol: stalled when ``|slope|`` of the window is below this (per epoch).
        converge_tol: converged when the variance of the window is below this.
        factor: the rate is multiplied by this when the loss stalled.
        min_lr: the rate is never lowered below this.
    """

    window: int = 5
    warmup: int = 5
    stall_tol: float = 0.01
    converge_tol: float = 2e-4
    factor: float = 0.1
    min_lr: float = 1e-4
    name: str = "trend"
    since: int = field(init=False)
    """Epochs that no window may include: the warm-up, later every epoch up to the last change."""

    def __post_init__(self) -> None:
        self.since = self.warmup

    def decide(self, model: fl.Graph, optimizer: torch.optim.Optimizer) -> Decision:
        trend = model.trend("log_val_loss")
        if len(trend) - self.since < self.window:
            return Decision()  # no full window at this rate yet
        epochs = f"epochs {len(trend) - self.window + 1}-{len(trend)}"
        if trend.converged(self.window, self.converge_tol):
            variance = statistics.pvariance(trend.window(self.window))
            return Decision(
                "stop",
                f"converged: variance {format_metric(variance)} < {self.converge_tol:g} "
                f"over {epochs}",
            )
        if trend.stalled(self.window, self.stall_tol):
            rate = learning_rate(optimizer)
            if rate <= self.min_lr * (1 + 1e-9):  # (0.1 * 0.1 * 0.1 is not quite 0.001)
                return Decision()  # already at the smallest rate: wait for convergence
            for group in optimizer.param_groups:
                group["lr"] = max(rate * self.factor, self.min_lr)
            self.since = len(trend)
            slope = trend.slope(self.window)
            return Decision(
                "lower",
                f"stalled: |slope| {format_metric(abs(slope))} < {self.stall_tol:g} per epoch "
                f"over {epochs}",
            )
        return Decision()


class PlateauRule:
    """`ReduceLROnPlateau` on the validation loss, and early stopping by hand.

    Early stopping counts the epochs since the best validation loss (an epoch is a new
    best when it is below ``best * (1 - threshold)``, the scheduler's own test in its
    default ``threshold_mode="rel"``) and stops when they reach `stop_patience`.

    Args:
        optimizer: the optimizer whose rate the scheduler lowers.
        patience: the scheduler's patience: it lowers the rate at the
            ``patience + 1``-th epoch in a row without a new best.
        stop_patience: epochs without a new best that stop training.
        factor: as the scheduler's.
        min_lr: as the scheduler's.
        threshold: as the scheduler's (relative).
    """

    name = "plateau"

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        patience: int = 4,
        stop_patience: int = 10,
        factor: float = 0.1,
        min_lr: float = 1e-4,
        threshold: float = 1e-4,
    ) -> None:
        self.scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer, patience=patience, factor=factor, min_lr=min_lr, threshold=threshold
        )
        self.stop_patience = stop_patience
        self.threshold = threshold
        self.best = math.inf
        self.bad_epochs = 0

    def decide(self, model: fl.Graph, optimizer: torch.optim.Optimizer) -> Decision:
        loss = model.trend("val_loss").latest
        rate = learning_rate(optimizer)
        self.scheduler.step(loss)
        if loss < self.best * (1 - self.threshold):
            self.best, self.bad_epochs = loss, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs >= self.stop_patience:
            return Decision(
                "stop",
                f"no new best for {self.bad_epochs} epochs (best {format_metric(self.best)})",
            )
        if learning_rate(optimizer) < rate:
            bad = self.scheduler.patience + 1
            return Decision(
                "lower",
                f"no new best for {bad} epochs in a row (best {format_metric(self.best)})",
            )
        return Decision()


# -- training -------------------------------------------------------------------------------


@dataclass
class EpochResult:
    """One epoch of a run."""

    epoch: int
    lr: float
    """The rate the epoch trained at."""
    train_loss: float
    val_loss: float
    action: str
    """What the rule decided after the epoch: ``"lower"``, ``"stop"`` or ``""``."""


@dataclass
class Run:
    """A whole run: its epochs, its rate changes, why it ended, how long it took."""

    name: str
    epochs: list[EpochResult]
    stop_reason: str
    seconds: float

    @property
    def lr_changes(self) -> list[tuple[int, float]]:
        """``(epoch, new rate)`` for each change: the new rate applies from the next epoch."""
        changes = []
        for before, after in itertools.pairwise(self.epochs):
            if after.lr != before.lr:
                changes.append((before.epoch, after.lr))
        return changes

    @property
    def final(self) -> EpochResult:
        """The last epoch."""
        return self.epochs[-1]


def train_epoch(
    model: fl.Graph,
    optimizer: torch.optim.Optimizer,
    data: Data,
    batch_size: int,
    generator: torch.Generator,
) -> None:
    """One pass over the training set in a shuffled order; records each batch's loss."""
    model.train()
    order = torch.randperm(len(data.train_x), generator=generator)
    for batch in order.split(batch_size):
        loss = functional.mse_loss(model(data.train_x[batch]), data.train_y[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        model.record("loss", loss)


@torch.no_grad()
def validation_loss(model: fl.Graph, data: Data) -> float:
    """Mean squared error on the validation set."""
    model.eval()
    return float(functional.mse_loss(model(data.validation_x), data.validation_y))


def train(
    model: fl.Graph,
    data: Data,
    make_rule: Callable[[torch.optim.Optimizer], Rule],
    *,
    epochs: int,
    lr: float = 0.1,
    momentum: float = 0.9,
    batch_size: int = 64,
    seed: int = 0,
    output: TextIO | None = None,
) -> Run:
    """Train `model` for at most `epochs` epochs; after each, the rule decides.

    Per epoch the graph records the training loss of every batch, the validation
    loss and its logarithm, and flushes: one point of history each, which the
    monitor prints and the rule reads.

    Args:
        model: the graph to train (fresh observation history).
        data: the samples.
        make_rule: builds the rule from the optimizer.
        epochs: the most epochs to train.
        lr: the initial learning rate of SGD.
        momentum: SGD's momentum.
        batch_size: samples per step.
        seed: seeds the order of the batches.
        output: where the monitor and the decisions write (default: stdout).

    Returns:
        the run.
    """
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    rule = make_rule(optimizer)
    generator = torch.Generator().manual_seed(seed)
    write = (output or sys.stdout).write
    results: list[EpochResult] = []
    stop_reason = f"ran all {epochs} epochs"
    start = time.perf_counter()
    with fl.Monitor(epochs, title=f"trend_training.py: {rule.name}", output=output) as monitor:
        for epoch in range(1, epochs + 1):
            rate = learning_rate(optimizer)
            train_epoch(model, optimizer, data, batch_size, generator)
            loss = validation_loss(model, data)
            model.record("val_loss", loss)
            model.record("log_val_loss", math.log(loss))
            model.flush()
            monitor.log(epoch, model, {"lr": rate})
            decision = rule.decide(model, optimizer)
            results.append(
                EpochResult(epoch, rate, model.trend("loss").latest, loss, decision.action)
            )
            if decision.action == "lower":
                write(f"  {decision.reason}: lr -> {learning_rate(optimizer):g}\n")
            elif decision.action == "stop":
                write(f"  {decision.reason}: stop\n")
                stop_reason = decision.reason
                break
    return Run(rule.name, results, stop_reason, time.perf_counter() - start)


# -- the comparison -------------------------------------------------------------------------


def comparison(runs: Sequence[Run]) -> str:
    """A table of the runs: epochs, why they ended, rate changes, final and best losses."""
    header = ("run", "epochs", "lr changes (after epoch: new lr)", "loss", "val_loss",
              "best val_loss", "time", "ended because")  # fmt: skip
    rows = [header]
    for run in runs:
        changes = ", ".join(f"{epoch}: {rate:g}" for epoch, rate in run.lr_changes) or "none"
        best = min(result.val_loss for result in run.epochs)
        rows.append((
            run.name, str(len(run.epochs)), changes, format_metric(run.final.train_loss),
            format_metric(run.final.val_loss), format_metric(best),
            format_duration(run.seconds), run.stop_reason,
        ))  # fmt: skip
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             for row in rows]  # fmt: skip
    return "\n".join(line.rstrip() for line in lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60, help="the most epochs per run")
    parser.add_argument("--samples", type=int, default=2048, help="training samples")
    parser.add_argument("--validation", type=int, default=512, help="validation samples")
    parser.add_argument("--width", type=int, default=32, help="hidden features")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=0.1, help="initial learning rate")
    parser.add_argument("--window", type=int, default=5, help="trend: epochs in a window")
    parser.add_argument("--warmup", type=int, default=5, help="trend: epochs before any window")
    parser.add_argument(
        "--stall-tol",
        type=float,
        default=0.01,
        help="trend: stalled when |slope of ln(val_loss)| per epoch is below this",
    )
    parser.add_argument(
        "--converge-tol",
        type=float,
        default=2e-4,
        help="trend: converged when the variance of ln(val_loss) is below this",
    )
    parser.add_argument("--patience", type=int, default=4, help="ReduceLROnPlateau's patience")
    parser.add_argument(
        "--stop-patience",
        type=int,
        default=10,
        help="plateau: epochs without a new best that stop training",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch (default: 1, the fastest for a model this small)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    data = make_data(args.samples, args.validation, seed=args.seed)
    initial = build_model(args.width)  # both runs start from copies of these weights
    parameters = sum(p.numel() for p in initial.parameters())
    print(
        f"{args.samples} training and {args.validation} validation samples, "
        f"{parameters:,} parameters, {args.threads} threads"
    )
    rules: dict[str, Callable[[torch.optim.Optimizer], Rule]] = {
        "trend": lambda optimizer: TrendRule(
            window=args.window,
            warmup=args.warmup,
            stall_tol=args.stall_tol,
            converge_tol=args.converge_tol,
        ),
        "plateau": lambda optimizer: PlateauRule(
            optimizer, patience=args.patience, stop_patience=args.stop_patience
        ),
    }
    runs = []
    for name, make_rule in rules.items():
        print(f"\n{name}:")
        runs.append(
            train(
                copy.deepcopy(initial),
                data,
                make_rule,
                epochs=args.epochs,
                lr=args.lr,
                batch_size=args.batch_size,
                seed=args.seed,
            )
        )
    print()
    print(comparison(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
