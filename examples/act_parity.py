"""Adaptive computation time (Graves, 2016) on parity, with flowdl's per-sample halting loop.

    python examples/act_parity.py            # the full run (about 3 minutes on one CPU core)

Each input is a vector of ``--bits`` entries in {-1, 0, +1}: a random number of them
(1 to ``--bits``, the *difficulty*) are set to ±1, the rest are 0; the target is the
parity of the number of +1 entries. A recurrent cell reads the whole vector at every
step ("pondering" on it) and decides after each step, per sample, whether to stop.

flowdl gives the loop: ``.loop(cell).until(cond, max_iter).using("x")`` halts each
sample on its own and, once some samples have halted, runs the cell on the active
rows only; ``g.iterations(tag)`` counts each sample's steps. ACT needs two more
things that the loop does not provide, and that the cell carries in its state:

- the mean-field output: the answer is ``sum_n w_n h_n`` with ``w_n`` the halting
  probabilities (``fl.LearnedHalt`` + sigmoid) and, at the last step, the remainder
  ``R = 1 - sum of the earlier ones``; the cell accumulates it, so the task loss
  also trains the halting unit (it learns to *keep going* when that helps);
- the halting decision: the cell marks a sample done once its cumulative halting
  probability reaches ``1 - eps`` (or at ``max_iter``), and the loop's condition
  reads that mark, so flowdl halts exactly where ACT says.

The ponder cost is ``N + R``: ``N`` from ``g.iterations("ponder")`` (no gradient,
as in the paper) and ``R`` from the final state (differentiable). The loss is the
cross-entropy of the parity plus ``tau * ponder``. The script reports accuracy and
mean ponder steps per difficulty. Graves saw the steps grow with the number of
non-zero entries (64 bits, 128 units, long training); at this script's scale (8 bits,
16 units, 4,000 steps) they do not, or not throughout: see the README's figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

import flowdl as fl

EPS = 0.01  # a sample halts once its cumulative halting probability reaches 1 - EPS


def parity_batch(
    batch: int, bits: int, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """``(x [B, bits], parity [B] in {0, 1}, difficulty [B])``.

    The difficulty (how many entries are non-zero) is uniform on 1..bits.

    Example:
        >>> x, y, k = parity_batch(4, 8, torch.Generator().manual_seed(0))
        >>> bool(((x != 0).sum(1) == k).all()), bool((y == ((x == 1).sum(1) % 2)).all())
        (True, True)
    """
    k = torch.randint(1, bits + 1, (batch,), generator=generator)
    order = torch.rand(batch, bits, generator=generator).argsort(1)
    nonzero = order < k[:, None]
    signs = torch.randint(0, 2, (batch, bits), generator=generator) * 2 - 1
    x = (signs * nonzero).float()
    y = ((x == 1).sum(1) % 2).float()
    return x, y, k


class ACTCell(nn.Module):
    """One ponder step over the state ``[h | acc | cumulative p | remainder | steps | done]``.

    ``h`` is the cell's hidden state; ``acc`` the weighted sum of the hidden states
    so far (ACT's mean-field state); the cell marks the sample done when its halting
    probabilities reach ``1 - EPS`` or at ``max_iter`` steps, and then weighs this
    step by the remainder instead of its probability.
    """

    def __init__(self, bits: int, hidden: int, max_iter: int) -> None:
        super().__init__()
        self.hidden, self.max_iter = hidden, max_iter
        self.cell = nn.GRUCell(bits + 1, hidden)  # +1: the first-step flag
        self.halt = fl.LearnedHalt(hidden)
        with torch.no_grad():  # every sample starts with p = sigmoid(-1) ~ 0.27: ~4 steps
            self.halt.proj.weight.zero_()  # what halts when is learnt, not inherited
            self.halt.proj.bias.fill_(-1.0)

    def forward(self, state: Tensor, x: Tensor) -> Tensor:
        hid = self.hidden
        h, acc = state[:, :hid], state[:, hid : 2 * hid]
        cumulative, steps = state[:, 2 * hid], state[:, 2 * hid + 2]
        first = (steps == 0).float()[:, None]
        h = self.cell(torch.cat([x, first], 1), h)
        p = torch.sigmoid(self.halt(h)).squeeze(1)
        steps = steps + 1
        last = (cumulative + p >= 1 - EPS) | (steps >= self.max_iter)
        remainder = 1 - cumulative
        weight = torch.where(last, remainder, p)
        acc = acc + weight[:, None] * h
        cumulative = cumulative + p
        r = torch.where(last, remainder, torch.zeros_like(p))
        done = last.float()
        tail = torch.stack([cumulative, r, steps, done], 1)
        return torch.cat([h, acc, tail], 1)


def build_model(bits: int, hidden: int = 16, max_iter: int = 12) -> fl.Graph:
    """The graph: initial state, the halting loop (tag ``"ponder"``), the read-out."""
    cell = ACTCell(bits, hidden, max_iter)
    width = 2 * hidden + 4
    return (
        fl.Flow(nn.Identity())
        .tag("x")
        .through(lambda x: x.new_zeros(x.shape[0], width))  # h = acc = 0, nothing pondered
        .loop(cell)
        .until(lambda s: s[:, -1] - 0.5, max_iter=max_iter)  # halt where the cell said done
        .using("x")
        .tag("ponder")
        .through(lambda s: s[:, hidden : 2 * hidden])  # the mean-field state
        .through(nn.Linear(hidden, 1))
        .through(lambda logits: logits.squeeze(1))
        .build()
    )


def ponder_cost(model: fl.Graph) -> tuple[Tensor, Tensor]:
    """``(N + R)`` per sample after a forward, and ``N``: the steps each sample ran
    (``g.iterations``, no gradient) plus the remainder of its last step (from the
    loop's final state, differentiable)."""
    steps = model.iterations("ponder")
    final = model.tagged("ponder")
    assert steps is not None
    assert isinstance(final, Tensor)
    return steps.to(final.dtype) + final[:, -3], steps


@dataclass
class Report:
    """What `evaluate` measured, per difficulty (number of non-zero entries)."""

    accuracy: float
    mean_steps: float
    by_difficulty: dict[int, tuple[float, float, int]]  # k -> (accuracy, mean steps, count)


@torch.no_grad()
def evaluate(model: fl.Graph, bits: int, samples: int, seed: int = 1234) -> Report:
    """Accuracy and ponder steps on fresh samples, overall and per difficulty."""
    generator = torch.Generator().manual_seed(seed)
    x, y, k = parity_batch(samples, bits, generator)
    logits = model(x)
    _, steps = ponder_cost(model)
    correct = ((logits > 0).float() == y).float()
    table = {}
    for d in range(1, bits + 1):
        rows = k == d
        if rows.any():
            table[d] = (
                float(correct[rows].mean()),
                float(steps[rows].double().mean()),
                int(rows.sum()),
            )
    return Report(float(correct.mean()), float(steps.double().mean()), table)


def train(
    model: fl.Graph,
    bits: int,
    steps: int,
    batch: int = 128,
    tau: float = 0.01,
    lr: float = 5e-3,
    log_every: int = 0,
) -> list[float]:
    """Adam on fresh batches; returns the task loss of every step. Records ``loss`` and
    ``ponder`` into the graph (flushed every `log_every` steps when positive).

    The ponder cost's weight rises linearly from 0 to `tau` over the first half of
    training: the network first learns the task with as many steps as it likes, then
    learns to spend fewer where it can."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for step in range(1, steps + 1):
        x, y, _ = parity_batch(batch, bits)
        logits = model(x)
        task = nn.functional.binary_cross_entropy_with_logits(logits, y)
        ponder, _ = ponder_cost(model)
        weight = tau * min(1.0, 2 * step / steps)
        loss = task + weight * ponder.mean()
        optimizer.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        losses.append(task.item())
        model.record("loss", task)
        model.record("ponder", ponder.mean())
        if log_every and step % log_every == 0:
            means = model.flush()
            print(f"step {step:5d}  loss {means['loss']:.3f}  ponder {means['ponder']:.2f}")
    return losses


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--bits", type=int, default=8)
    parser.add_argument("--hidden", type=int, default=16)
    parser.add_argument("--max-iter", type=int, default=12)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--tau", type=float, default=0.01, help="ponder cost weight")
    parser.add_argument("--eval-samples", type=int, default=6000)
    parser.add_argument("--threads", type=int, default=1)

    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    model = build_model(args.bits, args.hidden, args.max_iter)
    start = time.monotonic()
    train(model, args.bits, args.steps, args.batch, args.tau, log_every=max(args.steps // 10, 1))
    seconds = time.monotonic() - start
    report = evaluate(model, args.bits, args.eval_samples)
    print(f"trained {args.steps} steps of {args.batch} in {seconds:.0f} s")
    print(f"accuracy {report.accuracy:.3f}, mean ponder steps {report.mean_steps:.2f}")
    print("| non-zero entries | accuracy | mean ponder steps | samples |")
    print("|---|---|---|---|")
    for d, (accuracy, steps, count) in report.by_difficulty.items():
        print(f"| {d} | {accuracy:.3f} | {steps:.2f} | {count} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
