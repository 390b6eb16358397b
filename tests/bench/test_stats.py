"""Median, scaled MAD and paired ratios, on inputs worked out by hand."""

from __future__ import annotations

import pytest

from flowdl._bench.stats import MAD_SCALE, Summary, median, paired_ratio, scaled_mad


def test_median_odd_and_even() -> None:
    assert median([5.0, 1.0, 3.0]) == 3.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert median([7.0]) == 7.0


def test_median_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one round"):
        median([])


def test_scaled_mad_by_hand() -> None:
    # median 3; absolute deviations 2, 1, 0, 1, 97 -> median 1
    assert scaled_mad([1.0, 2.0, 3.0, 4.0, 100.0]) == pytest.approx(MAD_SCALE)
    # median 10; deviations 0, 0, 2, 2 -> median 1
    assert scaled_mad([10.0, 10.0, 8.0, 12.0]) == pytest.approx(1.0 * MAD_SCALE)
    assert scaled_mad([2.0, 2.0, 2.0]) == 0.0


def test_scaled_mad_estimates_the_standard_deviation_of_normal_data() -> None:
    import random

    rng = random.Random(1)
    values = [rng.gauss(0.0, 3.0) for _ in range(20001)]
    assert scaled_mad(values) == pytest.approx(3.0, rel=0.03)


def test_summary() -> None:
    assert Summary.of([3.0, 1.0, 2.0]) == Summary(median=2.0, spread=MAD_SCALE, n=3)


def test_paired_ratio_takes_the_median_of_round_ratios() -> None:
    # ratios 1.0, 1.5, 1.25 -> median 1.25, deviations 0.25, 0.25, 0 -> MAD 0.25
    got = paired_ratio([2.0, 3.0, 5.0], [2.0, 2.0, 4.0])
    assert got.median == pytest.approx(1.25)
    assert got.spread == pytest.approx(0.25 * MAD_SCALE)
    assert got.n == 3


def test_paired_ratio_is_not_the_ratio_of_medians() -> None:
    # a slow drift hits both sides of each round alike: the paired ratio sees none of it
    pytorch = [1.0, 2.0, 4.0, 8.0]
    flowdl = [1.1, 2.2, 4.4, 8.8]
    got = paired_ratio(flowdl, pytorch)
    assert got.median == pytest.approx(1.1)
    assert got.spread == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize(
    ("num", "den", "message"),
    [
        ([1.0], [1.0, 2.0], "one denominator per numerator"),
        ([1.0], [0.0], "positive denominators"),
        ([], [], "at least one round"),
    ],
)
def test_paired_ratio_errors(num: list[float], den: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        paired_ratio(num, den)
