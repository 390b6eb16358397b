"""How long the rest of the run will take: flowdl's one ETA rule.

`Graph.eta`, the training log (`Graph.write_log`) and `fl.Monitor` all estimate the
time left with `EtaEstimator`: the estimated duration of one epoch times the epochs
left. goDl and floDl extrapolate linearly (elapsed ÷ epochs done × epochs left), so
a slow first epoch (``torch.compile``, CUDA start-up, data caches filling) and
one-off pauses (a checkpoint, an evaluation, the garbage collector) skew every later
estimate. This estimator:

1. leaves the first epoch out as soon as a later one is known (a warm-up epoch is
   the rule, not the exception; when it is not slow, nothing is lost);
2. looks only at the last ``window`` epochs (10 by default), so the estimate follows
   a run whose epochs get faster or slower;
3. takes a trimmed mean of them: from five epochs on, the fastest and the slowest
   are dropped, so one stall does not move the estimate while a regular pattern
   (an evaluation every few epochs) still counts in proportion.
"""

from __future__ import annotations

import math


class EtaEstimator:
    """Estimates the duration of the coming epochs from those already measured.

    Args:
        window: how many recent epochs (after the first) the estimate looks at.

    Example:
        >>> eta = EtaEstimator()
        >>> for seconds in (9.0, 1.0, 1.2, 0.8):   # a slow warm-up epoch, then ~1 s
        ...     eta.add(seconds)
        >>> eta.per_epoch()
        1.0
        >>> eta.remaining(6)
        6.0
    """

    def __init__(self, window: int = 10) -> None:
        if window < 1:
            raise ValueError(f"the ETA window is at least 1 epoch; received {window}")
        self.window = window
        self._durations: list[float] = []

    def add(self, seconds: float) -> None:
        """Add the duration of one more epoch (non-finite or negative ones are ignored)."""
        if math.isfinite(seconds) and seconds >= 0:
            self._durations.append(seconds)

    def per_epoch(self) -> float | None:
        """The estimated duration of one epoch, or ``None`` before the first one."""
        durations = self._durations
        if not durations:
            return None
        recent = durations[1:][-self.window :] if len(durations) > 1 else durations
        if len(recent) >= 5:
            recent = sorted(recent)[1:-1]
        return sum(recent) / len(recent)

    def remaining(self, epochs_left: int) -> float | None:
        """Seconds until `epochs_left` more epochs are done, or ``None`` if unknown."""
        if epochs_left <= 0:
            return 0.0
        estimate = self.per_epoch()
        return None if estimate is None else estimate * epochs_left
