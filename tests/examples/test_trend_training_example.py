"""examples/trend_training.py: its decisions, recomputed from the recorded history, and main()."""

from __future__ import annotations

import copy
import io
import itertools
import math
from fractions import Fraction
from types import ModuleType
from typing import Any

import pytest
import torch
from torch import nn
from torch.nn import functional

import flowdl as fl
from tests.examples.support import load_example

# A toy size at which both rules lower the rate and stop within the epochs (checked below,
# so that the tests of the decisions test some).
TOY = {"samples": 512, "validation": 128, "width": 16, "epochs": 50, "batch_size": 32}


@pytest.fixture(scope="module")
def example() -> ModuleType:
    return load_example("trend_training")


# -- independent references -----------------------------------------------------------------


def exact_slope(values: list[float]) -> Fraction:
    """The least-squares slope of `values` against 0, 1, ..., n-1, in exact arithmetic."""
    n = len(values)
    center_x = Fraction(n - 1, 2)
    center_y = sum(map(Fraction, values)) / n
    numerator = sum((x - center_x) * (Fraction(y) - center_y) for x, y in enumerate(values))
    return numerator / sum((x - center_x) ** 2 for x in range(n))


def exact_variance(values: list[float]) -> Fraction:
    """The population variance of `values`, in exact arithmetic."""
    center = sum(map(Fraction, values)) / len(values)
    return sum((Fraction(y) - center) ** 2 for y in values) / len(values)


def trend_actions(val_losses: list[float], rates: list[float], rule: Any) -> tuple[list[str], int]:
    """What the trend rule must decide after each epoch, from the validation losses alone.

    Returns the actions and the number of epochs that had a full window.
    """
    window, stall, converge = rule.window, Fraction(rule.stall_tol), Fraction(rule.converge_tol)
    logs = [math.log(loss) for loss in val_losses]
    since, actions, judged = rule.warmup, [], 0
    for epoch in range(1, len(logs) + 1):
        action = ""
        if epoch - since >= window:  # only epochs after the warm-up or the last change
            judged += 1
            last = logs[epoch - window : epoch]
            assert len(last) == window
            at_minimum = rates[epoch - 1] <= rule.min_lr * (1 + 1e-9)
            if exact_variance(last) < converge:
                action = "stop"
            elif abs(exact_slope(last)) < stall and not at_minimum:
                action, since = "lower", epoch
        actions.append(action)
    return actions, judged


def plateau_actions(
    val_losses: list[float],
    rates: list[float],
    *,
    patience: int,
    stop_patience: int,
    min_lr: float = 1e-4,
    threshold: float = 1e-4,
) -> list[str]:
    """PyTorch's ReduceLROnPlateau rule (mode min, relative threshold, no cooldown) and
    early stopping with the same test for a new best, written out."""
    best_for_rate = best_for_stop = math.inf
    bad_for_rate = bad_for_stop = 0
    actions = []
    for loss, rate in zip(val_losses, rates, strict=True):
        if loss < best_for_rate * (1 - threshold):
            best_for_rate, bad_for_rate = loss, 0
        else:
            bad_for_rate += 1
        if loss < best_for_stop * (1 - threshold):
            best_for_stop, bad_for_stop = loss, 0
        else:
            bad_for_stop += 1
        # The (patience + 1)-th bad epoch lowers the rate, unless it is at min_lr already
        # (PyTorch skips changes smaller than its eps, 1e-8); either way the count restarts.
        lower = bad_for_rate > patience and rate - max(rate * 0.1, min_lr) > 1e-8
        if bad_for_rate > patience:
            bad_for_rate = 0
        actions.append("stop" if bad_for_stop >= stop_patience else "lower" if lower else "")
    return actions


# -- the model --------------------------------------------------------------------------------


def test_the_model_is_a_residual_mlp(example: ModuleType) -> None:
    model = example.build_model(8)
    assert isinstance(model, fl.Graph)
    assert model.label == "regressor"
    block = 8 + 8 + 8 * 8 + 8  # LayerNorm, Linear
    assert sum(p.numel() for p in model.parameters()) == (2 * 8 + 8) + 2 * block + (8 + 1)
    x = torch.randn(5, 2, dtype=torch.float64)
    model = model.double()
    out = model(x)
    embed, _, first, second, head = model.children()
    by_hand = functional.gelu(embed(x))
    for residual in (first, second):
        norm, linear, _ = residual.children()
        by_hand = by_hand + functional.gelu(linear(norm(by_hand)))
        assert isinstance(norm, nn.LayerNorm)
    torch.testing.assert_close(model.tagged("block_2"), by_hand, rtol=0, atol=1e-12)
    torch.testing.assert_close(out, head(by_hand), rtol=0, atol=1e-12)


def test_the_data_are_the_surface_plus_noise(example: ModuleType) -> None:
    data = example.make_data(4000, 1000, seed=3)
    assert data.train_x.shape == (4000, 2)
    assert data.validation_y.shape == (1000, 1)
    assert data.train_x.min() >= -1
    assert data.train_x.max() <= 1
    noise = data.train_y - example.surface(data.train_x)
    assert abs(float(noise.std()) - example.NOISE) < 0.003
    assert abs(float(noise.mean())) < 0.005
    again = example.make_data(4000, 1000, seed=3)
    assert torch.equal(again.train_y, data.train_y)
    assert not torch.equal(example.make_data(4000, 1000, seed=4).train_y, data.train_y)


# -- the rules on hand-made histories -------------------------------------------------------


class History:
    """A graph whose history of (log) validation losses is written by hand."""

    def __init__(self) -> None:
        self.graph = fl.Flow(nn.Linear(1, 1)).build()
        self.optimizer = torch.optim.SGD(self.graph.parameters(), lr=0.1)

    def add(self, loss: float) -> None:
        self.graph.record("val_loss", loss)
        self.graph.record("log_val_loss", math.log(loss))
        self.graph.flush()

    @property
    def lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])


def test_trend_rule_waits_for_the_warmup_and_a_full_window_at_each_rate(
    example: ModuleType,
) -> None:
    rule = example.TrendRule(window=3, warmup=2, stall_tol=0.01, converge_tol=1e-6, min_lr=1e-3)
    history = History()
    # Flat from the start: the warm-up (2 epochs), then a full window (3) hold it back.
    flat = [1.0, 1.0, 1.1, 1.0, 1.1, 1.0, 1.1, 1.0, 1.1, 1.0, 1.1]
    actions = []
    for loss in flat:
        history.add(loss)
        actions.append(rule.decide(history.graph, history.optimizer).action)
    # Windows (of ln values): epochs 3-5 (slope 0, variance > 1e-6): lower at 5; 6-8
    # (slope 0): lower at 8, to the minimum 1e-3; 9-11 stalled again, but at the minimum.
    assert actions == ["", "", "", "", "lower", "", "", "lower", "", "", ""]
    assert history.lr == pytest.approx(1e-3)
    for _ in range(3):
        history.add(1.0)
        actions.append(rule.decide(history.graph, history.optimizer).action)
    assert actions[-3:] == ["", "", "stop"]  # three equal values: variance 0


def test_trend_rule_is_not_fooled_by_a_spike_that_plateau_counts(example: ModuleType) -> None:
    """The history of docs/observation.md: a spike, then a steady decrease."""
    losses = [1.0, 0.6, 0.9, 0.85, 0.8, 0.75, 0.7]
    trend, plateau = History(), History()
    trend_rule = example.TrendRule(window=3, warmup=0, stall_tol=0.01)
    plateau_rule = example.PlateauRule(plateau.optimizer, patience=2, stop_patience=10)
    trend_actions_, plateau_actions_ = [], []
    for loss in losses:
        trend.add(loss)
        plateau.add(loss)
        trend_actions_.append(trend_rule.decide(trend.graph, trend.optimizer).action)
        plateau_actions_.append(plateau_rule.decide(plateau.graph, plateau.optimizer).action)
    assert plateau_actions_ == ["", "", "", "", "lower", "", ""]  # 3 epochs above 0.6
    assert trend_actions_ == [""] * 7  # the slope of every window is far from 0
    assert trend.lr == 0.1
    assert plateau.lr == pytest.approx(0.01)


# -- the rules in real runs -------------------------------------------------------------------


def toy_run(example: ModuleType, make_rule: Any, seed: int = 0) -> tuple[Any, fl.Graph]:
    """A seeded toy run on one thread (as main() trains: the numbers depend on the threads)."""
    torch.manual_seed(seed)
    data = example.make_data(TOY["samples"], TOY["validation"], seed=seed)
    model = example.build_model(TOY["width"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = example.train(
            model, data, make_rule, epochs=TOY["epochs"], batch_size=TOY["batch_size"],
            seed=seed, output=io.StringIO(),
        )  # fmt: skip
    finally:
        torch.set_num_threads(threads)
    return run, model


def test_trend_run_lowers_where_stalled_and_stops_where_converged(example: ModuleType) -> None:
    rules = []

    def make_rule(optimizer: torch.optim.Optimizer) -> Any:
        rules.append(example.TrendRule(window=5, warmup=5, stall_tol=0.01, converge_tol=2e-4))
        return rules[-1]

    run, model = toy_run(example, make_rule)
    epochs = run.epochs
    val_losses = [e.val_loss for e in epochs]
    rates = [e.lr for e in epochs]
    # What the rule read is what was recorded: one flushed point per epoch.
    assert model.trend("val_loss").values == tuple(val_losses)
    assert model.trend("log_val_loss").values == tuple(math.log(v) for v in val_losses)
    assert [e.epoch for e in epochs] == list(range(1, len(epochs) + 1))
    want, judged = trend_actions(val_losses, rates, rules[0])
    assert [e.action for e in epochs] == want
    assert judged >= 3
    # The toy run does decide: it lowers the rate, and stops before the last epoch.
    assert want.count("lower") >= 1
    assert want[-1] == "stop"
    assert len(epochs) < TOY["epochs"]
    assert run.stop_reason.startswith("converged: variance ")
    # Each drop divides the rate by ten from the next epoch on, and only then.
    for before, after in itertools.pairwise(epochs):
        expected = before.lr * 0.1 if before.action == "lower" else before.lr
        assert after.lr == pytest.approx(expected, rel=1e-12)
    changes = [(e.epoch, e.lr * 0.1) for e in epochs if e.action == "lower"]
    assert [epoch for epoch, _ in run.lr_changes] == [epoch for epoch, _ in changes]
    assert [rate for _, rate in run.lr_changes] == pytest.approx([rate for _, rate in changes])
    assert all(e.train_loss > 0 for e in epochs)


def test_plateau_run_follows_best_ever_and_patience(example: ModuleType) -> None:
    run, model = toy_run(
        example, lambda optimizer: example.PlateauRule(optimizer, patience=2, stop_patience=5)
    )
    epochs = run.epochs
    val_losses = [e.val_loss for e in epochs]
    assert model.trend("val_loss").values == tuple(val_losses)
    rates = [e.lr for e in epochs]
    want = plateau_actions(val_losses, rates, patience=2, stop_patience=5)
    assert [e.action for e in epochs] == want
    assert want.count("lower") >= 1
    assert want[-1] == "stop"
    assert run.stop_reason.startswith("no new best for 5 epochs")


def test_both_runs_start_from_the_same_weights_on_the_same_batches(example: ModuleType) -> None:
    torch.manual_seed(0)
    data = example.make_data(256, 64, seed=0)
    initial = example.build_model(8)
    sink = io.StringIO()
    runs = [
        example.train(copy.deepcopy(initial), data, make_rule, epochs=6, batch_size=32, output=sink)
        for make_rule in (
            lambda optimizer: example.TrendRule(warmup=10),
            lambda optimizer: example.PlateauRule(optimizer, patience=10),
        )
    ]
    first, second = ([(e.lr, e.train_loss, e.val_loss) for e in run.epochs] for run in runs)
    assert first == second  # no decision in 6 epochs: the two runs are the same run
    again = example.train(
        copy.deepcopy(initial), data, lambda optimizer: example.TrendRule(warmup=10),
        epochs=6, batch_size=32, output=sink,
    )  # fmt: skip
    assert [(e.lr, e.train_loss, e.val_loss) for e in again.epochs] == first  # seeded


# -- main -----------------------------------------------------------------------------------


def test_main_prints_both_runs_and_the_comparison(
    example: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    arguments = ["--samples", "512", "--validation", "128", "--width", "16", "--epochs", "50"]
    arguments += ["--batch-size", "32", "--patience", "2", "--stop-patience", "5"]
    threads = torch.get_num_threads()
    try:
        code = example.main(arguments)
    finally:
        torch.set_num_threads(threads)  # main() sets it for the whole process
    assert code == 0
    lines = capsys.readouterr().out.splitlines()
    parameters = sum(p.numel() for p in example.build_model(16).parameters())
    assert (
        lines[0] == f"512 training and 128 validation samples, {parameters:,} parameters, 1 threads"
    )
    trend_at, plateau_at = lines.index("trend:"), lines.index("plateau:")
    table_at = next(i for i, line in enumerate(lines) if line.startswith("run "))
    table = {line.split()[0]: line for line in lines[table_at + 1 :]}
    assert set(table) == {"trend", "plateau"}
    sections = {
        "trend": lines[trend_at + 1 : plateau_at],
        "plateau": lines[plateau_at + 1 : table_at],
    }
    for name, section in sections.items():
        assert section[-2].startswith("done: ")  # then a blank line
        epoch_lines = [line for line in section if line.startswith("epoch ")]
        assert epoch_lines[0].startswith("epoch  1/50  loss=")
        assert "  val_loss=" in epoch_lines[0]
        assert "  lr=0.1000  [" in epoch_lines[0]
        assert section[-2].startswith(f"done: {len(epoch_lines)}/50 epochs in ")
        # Each decision is printed under the epoch it followed; the table lists the same.
        changes, epoch = [], 0
        for line in section:
            if line.startswith("epoch "):
                epoch = int(line.split("/")[0].split()[-1])
            elif " lr -> " in line:
                changes.append(f"{epoch}: {line.split(' lr -> ')[1]}")
        assert changes
        assert table[name].split()[1] == str(len(epoch_lines))
        assert f"  {', '.join(changes)}  " in table[name]
    assert "converged: variance" in table["trend"]
    assert "no new best for 5 epochs" in table["plateau"]
