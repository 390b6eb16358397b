"""The ETA: a warm-up epoch and one-off stalls do not skew it; it follows a changing pace."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

import flowdl as fl
from flowdl._eta import EtaEstimator
from tests.monitor.conftest import FakeClock


def estimate(durations: list[float], window: int = 10) -> float | None:
    eta = EtaEstimator(window)
    for seconds in durations:
        eta.add(seconds)
    return eta.per_epoch()


def test_nothing_known_before_the_first_epoch() -> None:
    assert estimate([]) is None
    assert EtaEstimator().remaining(5) is None


def test_first_epoch_alone_is_the_estimate() -> None:
    assert estimate([3.0]) == 3.0


def test_slow_first_epoch_is_left_out() -> None:
    assert estimate([10.0, 1.0, 1.0]) == 1.0


def test_below_five_epochs_plain_mean_of_later_ones() -> None:
    assert estimate([10.0, 1.0, 2.0, 3.0]) == pytest.approx(2.0)


def test_one_stall_is_trimmed() -> None:
    # window after the first epoch: [1, 1, 1, 1, 1, 30, 1]: min and max dropped
    assert estimate([1.0] * 6 + [30.0, 1.0]) == 1.0


def test_window_follows_a_faster_pace() -> None:
    # the last ten after the first: five of 2 s then five of 1 s; trimmed: 4x1 + 4x2
    assert estimate([2.0] * 16 + [1.0] * 5) == pytest.approx(1.5)
    assert estimate([2.0] * 16 + [1.0] * 15) == 1.0


def test_remaining_multiplies_and_is_zero_at_the_end() -> None:
    eta = EtaEstimator()
    for seconds in (4.0, 2.0, 2.0):
        eta.add(seconds)
    assert eta.remaining(7) == 14.0
    assert eta.remaining(0) == 0.0


def test_bad_durations_are_ignored_and_bad_window_refused() -> None:
    assert estimate([float("nan"), -1.0, 2.0]) == 2.0
    with pytest.raises(ValueError, match="at least 1"):
        EtaEstimator(0)


@given(st.lists(st.floats(0.001, 1000.0), min_size=1, max_size=40))
def test_estimate_lies_within_the_durations_it_used(durations: list[float]) -> None:
    got = estimate(durations)
    assert got is not None
    used = durations[1:][-10:] if len(durations) > 1 else durations
    assert min(used) * (1 - 1e-12) <= got <= max(used) * (1 + 1e-12)


@given(st.floats(0.001, 1000.0), st.integers(1, 40))
def test_a_steady_pace_is_estimated_exactly(seconds: float, count: int) -> None:
    assert estimate([seconds] * count) == pytest.approx(seconds, rel=1e-12)


def test_monitor_eta_with_a_fake_clock(clock: FakeClock) -> None:
    stream = io.StringIO()
    monitor = fl.Monitor(10, output=stream, resources=False, clock=clock)
    for epoch, seconds in enumerate((10.0, 1.0, 1.0), start=1):
        clock.advance(seconds)
        monitor.log(epoch)
    # floDl's linear extrapolation would say 12 s / 3 epochs x 7 left = 28 s
    assert monitor.eta == 7.0
    assert stream.getvalue().splitlines() == [
        "epoch  1/10  [10.0s, ETA 1m30s]",
        "epoch  2/10  [1.0s, ETA 8.0s]",
        "epoch  3/10  [1.0s, ETA 7.0s]",
    ]


def test_monitor_spreads_a_gap_over_the_skipped_epochs(clock: FakeClock) -> None:
    monitor = fl.Monitor(20, output=io.StringIO(), resources=False, clock=clock)
    clock.advance(1.0)
    monitor.log(1)
    clock.advance(6.0)
    monitor.log(4)  # three epochs in 6 s: 2 s each
    assert monitor.eta == 16 * 2.0
    assert monitor.history[1]["duration_s"] == 6.0


def test_eta_is_zero_on_the_last_epoch(clock: FakeClock) -> None:
    monitor = fl.Monitor(2, output=io.StringIO(), resources=False, clock=clock)
    for epoch in (1, 2):
        clock.advance(1.0)
        monitor.log(epoch)
    assert monitor.eta == 0.0
