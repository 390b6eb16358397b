"""examples/act_parity.py: ACT on parity, checked against a hand-written ACT loop."""

from __future__ import annotations

from types import ModuleType

import pytest
import torch
from torch import Tensor, nn

from tests.examples.support import load_example


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return load_example("act_parity")


def hand_act(cell: nn.Module, readout: nn.Module, x: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """Graves's ACT written out in plain PyTorch on the whole batch with masks:
    ``(logits, N + R)``."""
    batch, hidden = x.shape[0], cell.hidden
    h = x.new_zeros(batch, hidden)
    acc = x.new_zeros(batch, hidden)
    cumulative = x.new_zeros(batch)
    remainder = x.new_zeros(batch)
    steps = x.new_zeros(batch)
    running = torch.ones(batch, dtype=torch.bool)
    for n in range(cell.max_iter):
        first = x.new_full((batch, 1), float(n == 0))
        new_h = cell.cell(torch.cat([x, first], 1), h)
        p = torch.sigmoid(cell.halt.proj(new_h)).squeeze(1)
        last = (cumulative + p >= 1 - eps) | torch.tensor(n + 1 >= cell.max_iter)
        weight = torch.where(last, 1 - cumulative, p)
        keep = running[:, None]
        acc = torch.where(keep, acc + weight[:, None] * new_h, acc)
        h = torch.where(keep, new_h, h)
        remainder = torch.where(running & last, 1 - cumulative, remainder)
        cumulative = torch.where(running, cumulative + p, cumulative)
        steps = steps + running.to(x.dtype)
        running = running & ~last
        if not running.any():
            break
    return readout(acc).squeeze(1), steps + remainder


def test_parity_batches_follow_the_definition(example: ModuleType) -> None:
    x, y, k = example.parity_batch(500, 10, torch.Generator().manual_seed(3))
    assert set(x.unique().tolist()) <= {-1.0, 0.0, 1.0}
    assert torch.equal((x != 0).sum(1), k)
    assert int(k.min()) >= 1
    assert int(k.max()) <= 10
    assert torch.equal(y, ((x == 1).sum(1) % 2).float())


def test_graph_matches_hand_written_act_with_gradients(example: ModuleType) -> None:
    torch.manual_seed(0)
    model = example.build_model(bits=5, hidden=8, max_iter=6).double()
    cell = next(m for m in model.modules() if isinstance(m, example.ACTCell))
    readout = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():  # a spread of halting speeds, so samples halt at different steps
        cell.halt.proj.bias.fill_(-0.5)
        cell.halt.proj.weight.normal_(0, 3)
    x, _, _ = example.parity_batch(32, 5, torch.Generator().manual_seed(1))
    x = x.double()
    logits = model(x)
    ponder, steps = example.ponder_cost(model)
    assert len(set(steps.tolist())) > 1, "every sample halted at the same step"
    want_logits, want_ponder = hand_act(cell, readout, x, example.EPS)
    torch.testing.assert_close(logits, want_logits)
    torch.testing.assert_close(ponder, want_ponder)
    params = list(model.parameters())
    got = torch.autograd.grad((logits.sum() + ponder.sum()), params)
    want = torch.autograd.grad((want_logits.sum() + want_ponder.sum()), params)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w)
    # every sample's weights sum to 1: the earlier probabilities plus the remainder
    final = model.tagged("ponder")
    remainder = final[:, -3]
    assert bool(((remainder > 0) & (remainder <= 1)).all())


def test_training_runs_and_reports_by_difficulty(
    example: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    threads = torch.get_num_threads()
    try:
        arguments = ["--bits", "4", "--hidden", "8", "--max-iter", "4", "--steps", "6"]
        arguments += ["--batch", "16", "--eval-samples", "200", "--threads", "1"]
        code = example.main(arguments)
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr().out
    assert code == 0
    assert "| non-zero entries | accuracy | mean ponder steps | samples |" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert [int(r.split("|")[1]) for r in rows] == [1, 2, 3, 4]
    for row in rows:
        accuracy, steps = float(row.split("|")[2]), float(row.split("|")[3])
        assert 0.0 <= accuracy <= 1.0
        assert 1.0 <= steps <= 4.0
