"""`fl.Trend`: queries over the per-epoch history of a metric.

Every query looks at a *window*: the last ``window`` values of the history, or all
of them when ``window`` is 0 or at least the history's length (goDl's rule). The
slope is the ordinary least-squares slope of the window against ``0, 1, ..., n-1``;
every predicate (`Trend.stalled`, `Trend.improving`, `Trend.converged`) is ``False``
when the window holds fewer than two values.

Tolerances are absolute (in the metric's units) or, with ``relative=True``, a
fraction of the window's level, as ``ReduceLROnPlateau(threshold_mode="rel")`` takes
them: with ``m`` the mean of the window,

- ``stalled(w, tol, relative=True)``: ``|slope| < tol·|m|`` (the change per epoch is
  less than ``tol`` of the level: ``tol=0.01`` is "moves less than 1 % per epoch");
- ``converged(w, tol, relative=True)``: population standard deviation
  ``< tol·|m|`` (the coefficient of variation is below ``tol``), that is
  variance ``< (tol·m)²``.

A window whose mean is 0 is never stalled nor converged relatively (nothing is
below 0). `Trend.improving` takes a direction: ``mode="min"`` (a loss: the slope is
negative) or ``mode="max"`` (an accuracy: the slope is positive).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from typing import Literal

__all__ = ["Mode", "Trend", "check_mode", "check_tolerance", "check_window", "exact_sum"]

Mode = Literal["min", "max"]
"""Which way is better: ``"min"`` (a loss) or ``"max"`` (an accuracy)."""


def check_window(window: int, method: str) -> None:
    if isinstance(window, bool) or not isinstance(window, int) or window < 0:
        raise ValueError(
            f"Trend.{method}(window={window!r}): the window must be an int >= 0 "
            "(the number of latest values to look at; 0 means all of them)"
        )


def check_tolerance(tol: float, method: str, relative: bool = False) -> None:
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not tol >= 0:
        raise ValueError(
            f"Trend.{method}(window, tol={tol!r}): the tolerance must be a number >= 0, "
            "e.g. tol=1e-3 (in the metric's units) or tol=0.01 with relative=True "
            "(1 % of the window's mean)"
        )
    if not isinstance(relative, bool):
        raise TypeError(
            f"Trend.{method}(window, tol, relative={relative!r}): relative must be True "
            "(tol is a fraction of the window's mean) or False (tol is in the metric's "
            f"units); received {type(relative).__name__}"
        )


def check_mode(mode: object, method: str) -> None:
    if mode not in ("min", "max"):
        raise ValueError(
            f"Trend.{method}(window, mode={mode!r}): the mode must be 'min' (lower is "
            "better: a loss) or 'max' (higher is better: an accuracy)"
        )


def exact_sum(values: Iterable[float]) -> float:
    """`math.fsum`, also where fsum refuses: ``inf - inf`` is NaN, and partial sums
    past the largest float are summed scaled down.

    So a diverged loss gives ``inf`` or ``nan`` (and every predicate ``False``)
    instead of an exception.

    Example:
        >>> exact_sum([0.1] * 10), exact_sum([float("inf"), float("-inf")])
        (1.0, nan)
        >>> exact_sum([1e308, 1e308, -1e308])
        1e+308
    """
    items = list(values)
    try:
        return math.fsum(items)
    except ValueError:  # inf and -inf
        return math.nan
    except OverflowError:  # an intermediate sum overflows; the total may not
        scale = 2.0**-64
        scaled = math.fsum(v * scale for v in items)
        return scaled / scale if math.isfinite(scaled / scale) else math.copysign(math.inf, scaled)


def least_squares_slope(values: Sequence[float]) -> float:
    """The least-squares slope of `values` against ``0, 1, ..., n-1`` (0 for n < 2).

    Computed from centred sums, ``Σ(x - x̄)(y - ȳ) / Σ(x - x̄)²``, which equals goDl's
    ``(nΣxy - ΣxΣy) / (nΣx² - (Σx)²)`` but does not lose digits to cancellation when
    the values are large and close together.

    Example:
        >>> least_squares_slope([5, 4, 3, 2, 1]), least_squares_slope([1, 3, 5, 7])
        (-1.0, 2.0)
    """
    n = len(values)
    if n < 2:
        return 0.0
    # Subnormal values lose their last bits in the centring (5e-324 / 2 is 0): work on
    # them scaled up by a power of two, which is exact, and scale the slope back.
    largest = max(abs(y) for y in values)
    scale = 2.0**600 if 0 < largest < 2.0**-900 else 1.0
    center_x = (n - 1) / 2
    center_y = exact_sum(y * scale for y in values) / n
    spread_x = n * (n * n - 1) / 12  # Σ(x - x̄)² for x = 0..n-1, exactly
    centred = exact_sum((x - center_x) * (y * scale - center_y) for x, y in enumerate(values))
    return centred / spread_x / scale


def population_variance(values: Sequence[float]) -> float:
    """``Σ(y - ȳ)² / n`` (0 for no values).

    Example:
        >>> population_variance([1.0, 2.0, 3.0, 4.0])
        1.25
    """
    n = len(values)
    if n == 0:
        return 0.0
    center = exact_sum(values) / n
    return exact_sum((y - center) ** 2 for y in values) / n


class Trend:
    """The history of one metric, one value per epoch (per `Graph.flush`), and queries on it.

    A `Trend` is a snapshot: call ``g.trend(tag)`` again after the next flush to see
    the new value. Lower is better for `improving` by default (a loss); pass
    ``mode="max"`` for a metric where higher is better (an accuracy). Tolerances are
    absolute, or relative to the window's mean with ``relative=True`` (see the
    module docstring for the exact rules).

    Window rule (goDl's): a query with ``window=w`` looks at the last ``w`` values,
    or at all values when ``w == 0`` or ``w >= len(trend)``. So ``stalled(5, tol)``
    can already be true at the second epoch, looking at two values; require
    ``len(trend) >= 5`` as well to wait for a full window. Every predicate is
    ``False`` with fewer than two values in the window, and ``False`` when the
    window holds a NaN.

    Args:
        values: the history, oldest first.

    Example:
        >>> import flowdl as fl
        >>> t = fl.Trend([1.0, 0.8, 0.7, 0.65, 0.64])
        >>> len(t), t.latest, round(t.slope(), 3), round(t.slope(2), 3)
        (5, 0.64, -0.087, -0.01)
        >>> t.improving(3), t.stalled(2, tol=0.05), t.stalled(5, tol=0.05)
        (True, True, False)
        >>> fl.Trend([0.5]).stalled(5, tol=1.0)   # one value: never stalled
        False
        >>> big = fl.Trend([1000.0, 999.0, 998.5])     # slope -0.75, mean 999.17
        >>> big.stalled(0, tol=0.001, relative=True)   # 0.75 < 0.001 * 999.17
        True
        >>> fl.Trend([0.5, 0.6, 0.7]).improving(mode="max")
        True
    """

    __slots__ = ("_values",)

    def __init__(self, values: Iterable[float] = ()) -> None:
        self._values = tuple(float(v) for v in values)

    # -------------------------------------------------------------- the values

    @property
    def values(self) -> tuple[float, ...]:
        """Every value, oldest first."""
        return self._values

    def __len__(self) -> int:
        return len(self._values)

    def __iter__(self) -> Iterator[float]:
        return iter(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Trend) and self._values == other._values

    def __hash__(self) -> int:
        return hash(self._values)

    def __repr__(self) -> str:
        return f"Trend({list(self._values)!r})"

    @property
    def latest(self) -> float:
        """The newest value (0.0 when empty)."""
        return self._values[-1] if self._values else 0.0

    @property
    def mean(self) -> float:
        """The mean of all values (0.0 when empty)."""
        return exact_sum(self._values) / len(self._values) if self._values else 0.0

    @property
    def min(self) -> float:
        """The smallest value (0.0 when empty)."""
        return min(self._values) if self._values else 0.0

    @property
    def max(self) -> float:
        """The largest value (0.0 when empty)."""
        return max(self._values) if self._values else 0.0

    def last(self, n: int) -> tuple[float, ...]:
        """The last `n` values (all of them when ``n >= len``; none for ``n == 0``).

        Args:
            n: how many values, ``>= 0``.

        Returns:
            the values, oldest first.

        Raises:
            ValueError: `n` is negative or not an int.

        Example:
            >>> import flowdl as fl
            >>> fl.Trend([3.0, 2.0, 1.0]).last(2)
            (2.0, 1.0)
        """
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ValueError(f"Trend.last(n={n!r}): n must be an int >= 0")
        return self._values[len(self._values) - n :] if n < len(self._values) else self._values

    def window(self, window: int = 0) -> tuple[float, ...]:
        """The values a query with this `window` looks at (see the class docstring).

        Args:
            window: the last `window` values; 0 (or ``>= len``) for all of them.

        Returns:
            the values, oldest first.

        Raises:
            ValueError: `window` is negative or not an int.

        Example:
            >>> import flowdl as fl
            >>> t = fl.Trend([3.0, 2.0, 1.0])
            >>> t.window(2), t.window(0) == t.window(10) == t.values
            ((2.0, 1.0), True)
        """
        check_window(window, "window")
        return self._tail(window)

    def _tail(self, window: int) -> tuple[float, ...]:
        values = self._values
        if window <= 0 or window >= len(values):
            return values
        return values[-window:]

    # ----------------------------------------------------------------- queries

    def slope(self, window: int = 0) -> float:
        """Least-squares slope of the window against the epoch index (0 for < 2 values).

        Units: change of the metric per epoch.

        Args:
            window: the last `window` values; 0 (the default) for all of them.

        Returns:
            the slope; 0.0 with fewer than two values.

        Raises:
            ValueError: `window` is negative or not an int.

        Example:
            >>> import flowdl as fl
            >>> t = fl.Trend([5.0, 4.0, 3.0, 3.0])
            >>> t.slope(), t.slope(2)
            (-0.7, 0.0)
        """
        check_window(window, "slope")
        return least_squares_slope(self._tail(window))

    def stalled(self, window: int, tol: float, relative: bool = False) -> bool:
        """Whether the metric stopped moving, with >= 2 values in the window.

        Absolute: ``|slope(window)| < tol`` (tol in the metric's units per epoch).
        Relative: ``|slope(window)| < tol * |mean of the window|`` (tol a fraction of
        the level per epoch; never true when that mean is 0).

        Args:
            window: how many latest values to look at (0: all).
            tol: the tolerance, >= 0.
            relative: whether `tol` is a fraction of the window's mean.

        Raises:
            ValueError: `window` or `tol` is negative or not a number.
            TypeError: `relative` is not a bool.

        Example:
            >>> import flowdl as fl
            >>> t = fl.Trend([2.0, 1.98, 1.96])              # slope -0.02, mean 1.98
            >>> t.stalled(0, 0.01), t.stalled(0, 0.011, relative=True)
            (False, True)
        """
        check_window(window, "stalled")
        check_tolerance(tol, "stalled", relative)
        tail = self._tail(window)
        if len(tail) < 2:
            return False
        bound = tol * abs(exact_sum(tail) / len(tail)) if relative else tol
        return abs(least_squares_slope(tail)) < bound

    def improving(self, window: int = 0, mode: Mode = "min") -> bool:
        """Whether the metric gets better, with >= 2 values in the window.

        ``mode="min"`` (a loss): ``slope(window) < 0``; ``mode="max"`` (an
        accuracy): ``slope(window) > 0``.

        Raises:
            ValueError: `window` is negative or not an int, or `mode` is neither
                ``"min"`` nor ``"max"``.

        Example:
            >>> import flowdl as fl
            >>> accuracy = fl.Trend([0.5, 0.6, 0.7])
            >>> accuracy.improving(), accuracy.improving(mode="max")
            (False, True)
        """
        check_window(window, "improving")
        check_mode(mode, "improving")
        tail = self._tail(window)
        if len(tail) < 2:
            return False
        slope = least_squares_slope(tail)
        return slope < 0 if mode == "min" else slope > 0

    def converged(self, window: int, tol: float, relative: bool = False) -> bool:
        """Whether the metric settled, with >= 2 values in the window.

        Absolute: the population variance of the window ``< tol`` (tol in the
        metric's units squared). Relative: the population standard deviation
        ``< tol * |mean of the window|`` (the coefficient of variation is below
        tol; never true when that mean is 0).

        Args:
            window: how many latest values to look at (0: all).
            tol: the tolerance, >= 0.
            relative: whether `tol` is a fraction of the window's mean.

        Raises:
            ValueError: `window` or `tol` is negative or not a number.
            TypeError: `relative` is not a bool.

        Example:
            >>> import flowdl as fl
            >>> t = fl.Trend([10.0, 10.2, 9.8])   # mean 10, standard deviation 0.163
            >>> t.converged(0, 0.01), t.converged(0, 0.02, relative=True)
            (False, True)
        """
        check_window(window, "converged")
        check_tolerance(tol, "converged", relative)
        tail = self._tail(window)
        if len(tail) < 2:
            return False
        variance = population_variance(tail)
        if not relative:
            return variance < tol
        return variance < (tol * (exact_sum(tail) / len(tail))) ** 2
