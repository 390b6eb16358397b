"""`fl.TrendGroup`: several named `fl.Trend` queried together (a tag group's trends).

The window and tolerance rules are `fl.Trend`'s (`flowdl._observe.trend`).
"""

from __future__ import annotations

from collections.abc import Iterator

from flowdl._observe.trend import Mode, Trend, check_mode, check_tolerance, check_window, exact_sum

__all__ = ["TrendGroup"]


class TrendGroup:
    """Several named trends queried together (``g.trends("head")`` for a tag group).

    ``all_*`` is ``False`` for an empty group; ``any_*`` is ``False`` when no trend
    qualifies; `mean_slope` is 0.0 for an empty group.

    Args:
        trends: ``{name: Trend}``, in the order the names were asked for.

    Example:
        >>> import flowdl as fl
        >>> group = fl.TrendGroup({"a": fl.Trend([0, 2, 4]), "b": fl.Trend([0, 1, 2])})
        >>> group.slopes(), group.mean_slope(), group.names
        ([2.0, 1.0], 1.5, ('a', 'b'))
        >>> group.any_stalled(0, tol=1.5), group.all_stalled(0, tol=1.5)
        (True, False)
    """

    __slots__ = ("_trends",)

    def __init__(self, trends: dict[str, Trend]) -> None:
        self._trends = dict(trends)

    @property
    def names(self) -> tuple[str, ...]:
        """The names of the trends, in order."""
        return tuple(self._trends)

    def __len__(self) -> int:
        return len(self._trends)

    def __iter__(self) -> Iterator[Trend]:
        return iter(self._trends.values())

    def __getitem__(self, name: str) -> Trend:
        try:
            return self._trends[name]
        except KeyError:
            known = ", ".join(self._trends) or "none"
            raise KeyError(f"no trend {name!r} in this group; it has: {known}") from None

    def items(self) -> list[tuple[str, Trend]]:
        """``(name, trend)`` pairs, in order."""
        return list(self._trends.items())

    def __repr__(self) -> str:
        inner = ", ".join(f"{k!r}: {v!r}" for k, v in self._trends.items())
        return f"TrendGroup({{{inner}}})"

    def slopes(self, window: int = 0) -> list[float]:
        """Each trend's `Trend.slope`, in order.

        Args:
            window: as for `Trend.slope`.

        Returns:
            one slope per trend.
        """
        return [t.slope(window) for t in self]

    def mean_slope(self, window: int = 0) -> float:
        """The mean of `slopes` (0.0 for an empty group).

        Args:
            window: as for `Trend.slope`.

        Returns:
            the mean slope.
        """
        slopes = self.slopes(window)
        return exact_sum(slopes) / len(slopes) if slopes else 0.0

    def all_improving(self, window: int = 0, mode: Mode = "min") -> bool:
        """Every trend is `Trend.improving` in `mode` (``False`` when empty).

        Raises:
            ValueError: a bad `window` or `mode` (checked even for an empty group).
        """
        check_window(window, "improving")
        check_mode(mode, "improving")
        return bool(self._trends) and all(t.improving(window, mode) for t in self)

    def any_improving(self, window: int = 0, mode: Mode = "min") -> bool:
        """At least one trend is `Trend.improving` in `mode`."""
        check_window(window, "improving")
        check_mode(mode, "improving")
        return any(t.improving(window, mode) for t in self)

    def all_stalled(self, window: int, tol: float, relative: bool = False) -> bool:
        """Every trend is `Trend.stalled` (``False`` when empty).

        Example:
            >>> import flowdl as fl
            >>> group = fl.TrendGroup({"a": fl.Trend([100, 99]), "b": fl.Trend([1, 0.99])})
            >>> group.all_stalled(0, 0.02, relative=True), group.all_stalled(0, 0.02)
            (True, False)
        """
        check_window(window, "stalled")
        check_tolerance(tol, "stalled", relative)
        return bool(self._trends) and all(t.stalled(window, tol, relative) for t in self)

    def any_stalled(self, window: int, tol: float, relative: bool = False) -> bool:
        """At least one trend is `Trend.stalled`."""
        check_window(window, "stalled")
        check_tolerance(tol, "stalled", relative)
        return any(t.stalled(window, tol, relative) for t in self)

    def all_converged(self, window: int, tol: float, relative: bool = False) -> bool:
        """Every trend is `Trend.converged` (``False`` when empty)."""
        check_window(window, "converged")
        check_tolerance(tol, "converged", relative)
        return bool(self._trends) and all(t.converged(window, tol, relative) for t in self)

    def any_converged(self, window: int, tol: float, relative: bool = False) -> bool:
        """At least one trend is `Trend.converged`."""
        check_window(window, "converged")
        check_tolerance(tol, "converged", relative)
        return any(t.converged(window, tol, relative) for t in self)
