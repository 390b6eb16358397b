"""`fl.Trend`: goDl's numbers, the window rule, the <2-points fix, and a least-squares oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flowdl as fl
from flowdl._observe.trend import least_squares_slope, population_variance

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
series = st.lists(finite, min_size=0, max_size=40)
windows = st.integers(min_value=0, max_value=45)


# ------------------------------------------------------------- goDl's numbers (§4.1, §8.3)


def test_empty_trend_is_all_zeros_and_false() -> None:
    t = fl.Trend()
    assert (len(t), t.latest, t.mean, t.min, t.max, t.slope(5)) == (0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert t.values == ()
    assert not t.stalled(5, 1.0)
    assert not t.improving(5)
    assert not t.converged(5, 1.0)


def test_single_value() -> None:
    t = fl.Trend([3.5])
    assert (t.slope(), t.mean, t.latest, t.min, t.max) == (0.0, 3.5, 3.5, 3.5, 3.5)


def test_mean_min_max_last() -> None:
    assert fl.Trend([2, 4, 6, 8]).mean == 5.0
    t = fl.Trend([3, 1, 4, 1, 5, 9])
    assert (t.min, t.max) == (1.0, 9.0)
    five = fl.Trend([1, 2, 3, 4, 5])
    assert five.last(3) == (3.0, 4.0, 5.0)
    assert five.last(10) == five.values
    assert five.last(0) == ()


def test_slopes() -> None:
    assert fl.Trend([5, 4, 3, 2, 1]).slope() == -1.0
    assert fl.Trend([1, 3, 5, 7]).slope() == 2.0
    assert fl.Trend([1, 2, 3, 4, 3, 2, 1]).slope(4) == -1.0


def test_improving_window() -> None:
    t = fl.Trend([0.1, 0.5, 1.0, 0.8, 0.6])
    assert t.improving(3)
    assert not t.improving(0)  # the whole history rises


def test_converged() -> None:
    assert fl.Trend([1.000, 1.001, 0.999, 1.000, 1.001]).converged(5, 1e-4)
    assert not fl.Trend([1, 2, 1.5, 2.5, 1]).converged(5, 1e-4)


def test_stalled() -> None:
    assert fl.Trend([5.0] * 5).stalled(5, 0.01)
    assert not fl.Trend([10, 8, 6, 4, 2]).stalled(5, 0.01)


# ------------------------------------------------------------------ the window rule


def test_window_zero_and_oversized_windows_mean_all_values() -> None:
    t = fl.Trend([4, 3, 9, 1])
    assert t.window(0) == t.window(4) == t.window(100) == t.values
    assert t.window(2) == (9.0, 1.0)
    assert t.slope(0) == t.slope(4) == t.slope(100)


def test_oversized_window_fires_early_and_len_guards_it() -> None:
    # stalled(5, tol) looks at the two values there are: the documented trap
    t = fl.Trend([0.500, 0.499])
    assert t.stalled(5, 0.01)
    assert not (len(t) >= 5 and t.stalled(5, 0.01))


@pytest.mark.parametrize("method", ["stalled", "improving", "converged"])
def test_every_predicate_is_false_with_fewer_than_two_points(method: str) -> None:
    for values in ([], [1.0], [-1e9]):
        t = fl.Trend(values)
        for window in (0, 1, 2, 5):
            args = (window,) if method == "improving" else (window, math.inf)
            assert getattr(t, method)(*args) is False
    # a window of one value is fewer than two points, even on a long history
    falling = fl.Trend([5, 4, 3, 2, 1])
    assert not falling.improving(1)
    assert not falling.stalled(1, math.inf)
    assert not falling.converged(1, math.inf)


def test_tolerances_are_strict() -> None:
    t = fl.Trend([0.0, 1.0])  # slope 1, variance 0.25
    assert not t.stalled(0, 1.0)
    assert t.stalled(0, 1.0 + 1e-12)
    assert not t.converged(0, 0.25)
    assert t.converged(0, 0.25 + 1e-12)
    assert not fl.Trend([2.0, 2.0]).improving()  # slope 0 is not improving


def test_nan_makes_every_predicate_false() -> None:
    t = fl.Trend([1.0, float("nan"), 0.5])
    assert math.isnan(t.slope())
    assert not t.stalled(0, 1e9)
    assert not t.improving()
    assert not t.converged(0, 1e9)


@pytest.mark.parametrize("window", [-1, 1.5, "3", True, None])
def test_bad_windows_are_errors(window: object) -> None:
    t = fl.Trend([1, 2, 3])
    for call in (
        lambda: t.slope(window),  # type: ignore[arg-type]
        lambda: t.improving(window),  # type: ignore[arg-type]
        lambda: t.stalled(window, 0.1),  # type: ignore[arg-type]
        lambda: t.converged(window, 0.1),  # type: ignore[arg-type]
        lambda: t.window(window),  # type: ignore[arg-type]
    ):
        with pytest.raises(ValueError, match="the window must be an int >= 0"):
            call()
    with pytest.raises(ValueError, match="n must be an int >= 0"):
        t.last(-1)


@pytest.mark.parametrize("tol", [-0.1, float("nan"), "0.1", None])
def test_bad_tolerances_are_errors(tol: object) -> None:
    t = fl.Trend([1, 2, 3])
    with pytest.raises(ValueError, match="the tolerance must be a number >= 0"):
        t.stalled(3, tol)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="the tolerance must be a number >= 0"):
        t.converged(3, tol)  # type: ignore[arg-type]


def test_snapshot_equality_and_repr() -> None:
    values = [1.0, 2.0]
    t = fl.Trend(values)
    values.append(3.0)
    assert t.values == (1.0, 2.0)  # a snapshot
    assert t == fl.Trend((1, 2))
    assert hash(t) == hash(fl.Trend([1.0, 2.0]))
    assert repr(t) == "Trend([1.0, 2.0])"
    assert list(t) == [1.0, 2.0]


# ------------------------------------------------------------ least-squares oracles


def closed_form_slope(values: list[float]) -> float:
    """goDl's uncentred formula, in exact rational arithmetic."""
    from fractions import Fraction

    n = len(values)
    if n < 2:
        return 0.0
    ys = [Fraction(v) for v in values]
    sx = Fraction(n * (n - 1), 2)
    sxx = Fraction((n - 1) * n * (2 * n - 1), 6)
    sy = sum(ys, Fraction(0))
    sxy = sum((Fraction(i) * y for i, y in enumerate(ys)), Fraction(0))
    return float((n * sxy - sx * sy) / (n * sxx - sx * sx))


def tail(values: list[float], window: int) -> list[float]:
    return values if window <= 0 or window >= len(values) else values[-window:]


@settings(max_examples=300, deadline=None)
@given(series, windows)
def test_slope_matches_numpy_polyfit_and_the_exact_closed_form(
    values: list[float], window: int
) -> None:
    got = fl.Trend(values).slope(window)
    ys = tail(values, window)
    exact = closed_form_slope(ys)
    scale = max([1.0, *(abs(v) for v in ys)])
    assert got == pytest.approx(exact, rel=1e-9, abs=1e-12 * scale)
    if len(ys) >= 2:
        fitted = np.polyfit(np.arange(len(ys), dtype=np.float64), np.array(ys), 1)[0]
        assert got == pytest.approx(float(fitted), rel=1e-6, abs=1e-8 * scale)


@settings(max_examples=300, deadline=None)
@given(series, windows, st.floats(min_value=0, max_value=1e3))
def test_predicates_follow_their_definitions(values: list[float], window: int, tol: float) -> None:
    t = fl.Trend(values)
    ys = tail(values, window)
    enough = len(ys) >= 2
    slope = closed_form_slope(ys)
    variance = float(np.var(np.array(ys, dtype=np.float64))) if ys else 0.0
    assert t.improving(window) == (enough and t.slope(window) < 0)
    assert t.stalled(window, tol) == (enough and abs(t.slope(window)) < tol)
    assert t.converged(window, tol) == (enough and population_variance(ys) < tol)
    assert population_variance(ys) == pytest.approx(variance, rel=1e-9, abs=1e-9)
    # decisions far from the threshold agree with the exact slope
    if enough and abs(abs(slope) - tol) > 1e-6 * max(1.0, abs(slope)):
        assert t.stalled(window, tol) == (abs(slope) < tol)


@settings(max_examples=200, deadline=None)
@given(st.lists(finite, min_size=2, max_size=30), st.floats(min_value=-1e6, max_value=1e6))
def test_slope_ignores_an_added_constant_and_flips_with_the_sign(
    values: list[float], shift: float
) -> None:
    base = least_squares_slope(values)
    scale = max(1.0, abs(shift), *(abs(v) for v in values))
    assert least_squares_slope([v + shift for v in values]) == pytest.approx(base, abs=1e-9 * scale)
    assert least_squares_slope([-v for v in values]) == -base


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(min_value=-1e3, max_value=1e3), min_size=2, max_size=30, unique=True))
def test_a_strictly_falling_history_improves_and_a_constant_one_stalls(
    values: list[float],
) -> None:
    falling = sorted(values, reverse=True)
    assert fl.Trend(falling).improving()
    assert not fl.Trend(sorted(values)).improving()
    constant = fl.Trend([values[0]] * len(values))
    assert constant.stalled(0, 1e-12)
    assert constant.converged(0, 1e-12)
    assert not constant.improving()


def test_infinite_values_give_nan_or_inf_and_false_predicates() -> None:
    diverged = fl.Trend([1.0, 1e308, 1e308, float("inf")])
    assert math.isnan(diverged.slope())
    assert diverged.mean == math.inf
    assert not diverged.stalled(0, 1e300)
    assert not diverged.improving()
    assert not diverged.converged(0, 1e300)
    both = fl.Trend([float("inf"), float("-inf")])
    assert math.isnan(both.mean)
    assert fl.TrendGroup({"a": both}).mean_slope() != 0.0  # nan, not an exception
    assert fl.Trend([1e308, 1e308, -1e308]).mean == pytest.approx(1e308 / 3)
