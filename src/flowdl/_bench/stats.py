"""Robust statistics for timings: median, scaled MAD, paired ratios.

The scaled MAD (1.4826 × the median absolute deviation from the median) estimates the
standard deviation of normally distributed data while ignoring outliers, which timings
on a shared machine have plenty of.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass

MAD_SCALE = 1.4826
"""Makes the MAD of normal data estimate its standard deviation (1 / Φ⁻¹(3/4))."""


def median(values: Sequence[float]) -> float:
    """The median of `values`.

    Raises:
        ValueError: `values` is empty.

    Example:
        >>> median([3.0, 1.0, 2.0]), median([4.0, 1.0, 2.0, 3.0])
        (2.0, 2.5)
    """
    if not values:
        raise ValueError("the median of no values is undefined; measure at least one round")
    return float(statistics.median(values))


def scaled_mad(values: Sequence[float]) -> float:
    """1.4826 × the median absolute deviation of `values` from their median.

    Example:
        >>> scaled_mad([1.0, 2.0, 3.0, 4.0, 100.0])   # the outlier does not count
        1.4826
        >>> scaled_mad([5.0])
        0.0
    """
    center = median(values)
    return MAD_SCALE * median([abs(v - center) for v in values])


@dataclass(frozen=True)
class Summary:
    """The median of some values and their scaled MAD.

    Example:
        >>> Summary.of([1.0, 2.0, 3.0, 4.0, 100.0])
        Summary(median=3.0, spread=1.4826, n=5)
    """

    median: float
    spread: float
    n: int

    @classmethod
    def of(cls, values: Sequence[float]) -> Summary:
        return cls(median(values), scaled_mad(values), len(values))


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> Summary:
    """Median and scaled MAD of the round-by-round ratios ``numerators[i] / denominators[i]``.

    Rounds are paired because the two arms of a round ran back to back: the ratio of
    one round cancels slow drifts of the machine that the ratio of two medians keeps.

    Raises:
        ValueError: the sequences differ in length, are empty, or a denominator is not
            positive.

    Example:
        >>> paired_ratio([2.0, 3.0, 5.0], [2.0, 2.0, 4.0])   # ratios 1.0, 1.5, 1.25
        Summary(median=1.25, spread=0.37065, n=3)
    """
    if len(numerators) != len(denominators):
        raise ValueError(
            f"paired ratios need one denominator per numerator, got {len(numerators)} "
            f"numerators and {len(denominators)} denominators"
        )
    if any(d <= 0 for d in denominators):
        raise ValueError(f"ratios need positive denominators, got {list(denominators)}")
    return Summary.of([n / d for n, d in zip(numerators, denominators, strict=True)])
