"""Relative tolerances and the direction of `improving`, against hand computations."""

from __future__ import annotations

import pytest

import flowdl as fl

# [4.0, 3.0, 2.5, 2.25]: mean 2.9375, slope by least squares over x = 0..3:
# x - 1.5 = (-1.5, -0.5, 0.5, 1.5), y - 2.9375 = (1.0625, 0.0625, -0.4375, -0.6875)
# Σ(x-x̄)(y-ȳ) = -1.59375 - 0.03125 - 0.21875 - 1.03125 = -2.875; Σ(x-x̄)² = 5
# slope = -0.575; population variance = (1.12890625 + 0.00390625 + 0.19140625
# + 0.47265625) / 4 = 0.44921875, standard deviation 0.670237...
VALUES = [4.0, 3.0, 2.5, 2.25]
SLOPE = -0.575
MEAN = 2.9375
VARIANCE = 0.44921875


def test_the_hand_computed_figures() -> None:
    t = fl.Trend(VALUES)
    assert t.slope() == pytest.approx(SLOPE)
    assert t.mean == pytest.approx(MEAN)


@pytest.mark.parametrize(
    ("tol", "expected"),
    [(0.19, False), (0.196, True)],  # |slope| / mean = 0.575 / 2.9375 = 0.19574...
)
def test_relative_stalled_compares_the_slope_with_tol_times_the_mean(
    tol: float, expected: bool
) -> None:
    assert fl.Trend(VALUES).stalled(0, tol, relative=True) is expected


@pytest.mark.parametrize(
    ("tol", "expected"),
    [(0.228, False), (0.229, True)],  # sqrt(0.44921875) / 2.9375 = 0.22816...
)
def test_relative_converged_compares_the_spread_with_tol_times_the_mean(
    tol: float, expected: bool
) -> None:
    assert fl.Trend(VALUES).converged(0, tol, relative=True) is expected


def test_absolute_tolerances_are_unchanged() -> None:
    t = fl.Trend(VALUES)
    assert t.stalled(0, 0.58)
    assert not t.stalled(0, 0.57)
    assert t.converged(0, 0.45)
    assert not t.converged(0, 0.449)


@pytest.mark.parametrize("scale", [1e-6, 1.0, 1e6])
def test_relative_answers_do_not_depend_on_the_units(scale: float) -> None:
    t = fl.Trend([v * scale for v in VALUES])
    assert t.stalled(0, 0.196, relative=True)
    assert not t.stalled(0, 0.19, relative=True)
    assert t.converged(0, 0.229, relative=True)
    assert not t.converged(0, 0.228, relative=True)


def test_a_negative_metric_uses_the_size_of_its_mean() -> None:
    t = fl.Trend([-v for v in VALUES])
    assert t.stalled(0, 0.196, relative=True)
    assert t.converged(0, 0.229, relative=True)


def test_a_window_of_mean_zero_is_never_relatively_settled() -> None:
    t = fl.Trend([-1.0, 1.0, -1.0, 1.0])
    assert not t.stalled(0, 10.0, relative=True)
    assert not t.converged(0, 10.0, relative=True)


def test_relative_uses_the_window_only() -> None:
    t = fl.Trend([100.0, 50.0, *VALUES])
    assert t.stalled(4, 0.196, relative=True)
    assert not t.stalled(0, 0.196, relative=True)


def test_improving_in_either_direction() -> None:
    falling, rising = fl.Trend(VALUES), fl.Trend([0.5, 0.6, 0.65])
    assert falling.improving()
    assert falling.improving(mode="min")
    assert not falling.improving(mode="max")
    assert rising.improving(mode="max")
    assert not rising.improving()
    flat = fl.Trend([1.0, 1.0])
    assert not flat.improving(mode="min")
    assert not flat.improving(mode="max")
    assert not fl.Trend([1.0]).improving(mode="max")


def test_bad_options_are_explained() -> None:
    t = fl.Trend(VALUES)
    with pytest.raises(ValueError, match=r"mode='up'.*'min'.*'max'"):
        t.improving(mode="up")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="relative=True"):
        t.stalled(0, -0.1, relative=True)
    with pytest.raises(TypeError, match="relative must be True"):
        t.converged(0, 0.1, relative="yes")  # type: ignore[arg-type]


def test_groups_take_the_same_options() -> None:
    group = fl.TrendGroup({"loss": fl.Trend(VALUES), "acc": fl.Trend([0.5, 0.6, 0.65])})
    assert group.any_improving(mode="max")
    assert not group.all_improving(mode="max")
    assert group.all_stalled(0, 0.2, relative=True)
    assert group.any_stalled(0, 0.196, relative=True)
    assert not group.all_stalled(0, 0.19, relative=True)
    acc_cv = fl.Trend([0.5, 0.6, 0.65]).converged(0, 0.2, relative=True)
    assert group.any_converged(0, 0.229, relative=True)
    assert group.all_converged(0, 0.229, relative=True) is acc_cv
    empty = fl.TrendGroup({})
    with pytest.raises(ValueError, match="mode"):
        empty.all_improving(mode="down")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="tolerance"):
        empty.any_converged(0, float("nan"), relative=True)


def test_subnormal_histories_keep_their_direction() -> None:
    # 5e-324 / 2 rounds to 0: the centred sums once lost the whole slope (hypothesis found it)
    assert fl.Trend([5e-324, 0.0]).slope() == -5e-324
    assert fl.Trend([5e-324, 0.0]).improving()
    assert fl.Trend([0.0, 5e-324]).improving(mode="max")
