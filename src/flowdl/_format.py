"""How flowdl writes numbers for people: durations and metric values.

One place for both, so the training log, the monitor's terminal line, the dashboard
and the profile report agree on what ``1.2s`` or ``0.0123`` look like.
"""

from __future__ import annotations

import math


def format_duration(seconds: float) -> str:
    """A duration as people read it: ``42ms``, ``1.2s``, ``2m05s``, ``3h07m``.

    Under a second: whole milliseconds (``0ms`` for anything shorter); under a
    minute: seconds with one decimal; under an hour: minutes and two-digit seconds;
    longer: hours and two-digit minutes. Negative durations are written with a
    leading ``-``; a NaN or infinite duration is ``?``.

    Args:
        seconds: the duration in seconds.

    Example:
        >>> [format_duration(s) for s in (0.0421, 1.23, 125.4, 11_230.0)]
        ['42ms', '1.2s', '2m05s', '3h07m']
        >>> format_duration(59.99), format_duration(3599.6)
        ('1m00s', '1h00m')
    """
    if not math.isfinite(seconds):
        return "?"
    if seconds < 0:
        return "-" + format_duration(-seconds)
    if seconds < 1.0:
        return f"{int(seconds * 1000)}ms"
    if round(seconds, 1) < 60.0:
        return f"{seconds:.1f}s"
    whole = round(seconds)
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    minutes = round(seconds / 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"


def format_metric(value: float) -> str:
    """A metric value in a few characters: ``0``, ``1.23e-05``, ``0.1235``, ``123.46``.

    Zero is ``0``; below 0.001 in magnitude, two-decimal scientific notation; below
    100, four decimals; otherwise two decimals (goDl's and floDl's convention).
    NaN and infinities are written as Python writes them (``nan``, ``inf``).

    Args:
        value: the number to write.

    Example:
        >>> [format_metric(v) for v in (0.0, 1.234e-5, 0.123456, -3.5, 123.456)]
        ['0', '1.23e-05', '0.1235', '-3.5000', '123.46']
        >>> format_metric(float("nan"))
        'nan'
    """
    if not math.isfinite(value):
        return str(value)
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude < 1e-3:
        return f"{value:.2e}"
    if magnitude < 100:
        return f"{value:.4f}"
    return f"{value:.2f}"


def format_precise_duration(seconds: float) -> str:
    """A short duration to three significant digits: ``850µs``, ``1.25ms``, ``12.3ms``.

    For the times of single nodes (profiles), where `format_duration`'s whole
    milliseconds would read ``0ms``. Under a millisecond: whole microseconds; under
    a second: milliseconds with three significant digits; a second or more: as
    `format_duration` writes it.

    Args:
        seconds: the duration in seconds.

    Example:
        >>> [format_precise_duration(s) for s in (0.000_000_4, 0.000_85, 0.001_254, 0.0123, 0.4567)]
        ['0µs', '850µs', '1.25ms', '12.3ms', '457ms']
        >>> format_precise_duration(0.999_9996), format_precise_duration(2.5)
        ('1.0s', '2.5s')
    """
    if not math.isfinite(seconds):
        return "?"
    if seconds < 0:
        return "-" + format_precise_duration(-seconds)
    micro = seconds * 1e6
    if round(micro) < 1000:
        return f"{round(micro)}µs"
    milli = seconds * 1e3
    for decimals, below in ((2, 9.995), (1, 99.95), (0, 999.5)):
        if milli < below:
            return f"{milli:.{decimals}f}ms"
    return format_duration(max(seconds, 1.0))  # 0.9999996s rounds up to 1.0s, not down
