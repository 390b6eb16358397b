"""The standing fuzzer: many descriptions, a tally per category, and what failed.

`fuzz(graphs, seed)` checks the descriptions drawn from seeds ``seed, seed + 1, ...``
(`flowdl._fuzz.trial`), the first `fast` of them in fast mode too, and returns a
`FuzzReport`: per category, how many graphs were built, how many invalid ones were
rejected as they must be, and how many mismatched or crashed; and for each failure its
seed (``--seed S --graphs 1`` draws it again), the builder chain it stands for, and a
shrunk chain that fails the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from flowdl._fuzz.describe import CATEGORIES, describe
from flowdl._fuzz.ir import Description
from flowdl._fuzz.render import render
from flowdl._fuzz.shrink import shrink
from flowdl._fuzz.trial import Verdict, run_trial

FAST = "fast mode"
"""The row of the report that counts the fast-mode trials."""


@dataclass
class Tally:
    """One row of the report."""

    built: int = 0
    rejected: int = 0
    mismatches: int = 0
    crashes: int = 0

    def add(self, verdict: Verdict) -> None:
        self.built += verdict.built
        self.rejected += verdict.status == "rejected"
        self.mismatches += verdict.status == "mismatch"
        self.crashes += verdict.status == "crash"


@dataclass
class Failure:
    """A mismatch or a crash.

    Attributes:
        description: what failed (drawn from ``description.seed``).
        verdict: how it failed.
        fast: whether it failed in fast mode.
        shrunk: a smaller description failing the same way, or ``None``.
    """

    description: Description
    verdict: Verdict
    fast: bool
    shrunk: Description | None = None

    @property
    def rerun(self) -> str:
        """The command that checks this description again."""
        fast = " --fast 1" if self.fast else ""
        return f"python -m flowdl fuzz --seed {self.description.seed} --graphs 1{fast}"

    def lines(self) -> list[str]:
        d = self.description
        mode = " in fast mode" if self.fast else ""
        out = [f"[{d.category}] seed {d.seed}: {self.verdict.status}{mode}"]
        out += [f"  {line}" for line in self.verdict.details[:8]]
        out.append(f"  rerun: {self.rerun}")
        out.append("  description:")
        out += [f"    {line}" for line in render(d).splitlines()]
        if self.shrunk is not None and self.shrunk != d:
            out.append("  shrunk to:")
            out += [f"    {line}" for line in render(self.shrunk).splitlines()]
        return out


@dataclass
class FuzzReport:
    """What a fuzzing run found.

    Attributes:
        graphs: how many descriptions were drawn.
        seed: the first seed.
        fast: how many of them were also checked in fast mode.
        seconds: how long it took.
        tallies: a row per category, and one for fast mode.
        failures: every mismatch and crash.
    """

    graphs: int
    seed: int
    fast: int
    seconds: float = 0.0
    tallies: dict[str, Tally] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether nothing mismatched and nothing crashed."""
        return not self.failures

    def lines(self) -> list[str]:
        """The report, as printed by ``python -m flowdl fuzz``."""
        fast = f", the first {self.fast} also in fast mode" if self.fast else ""
        out = [f"flowdl fuzz: {self.graphs} graphs from seed {self.seed}{fast}"]
        out.append(
            f"{'category':<18} {'built':>6} {'rejected':>9} {'mismatches':>11} {'crashes':>8}"
        )
        total = Tally()
        for name, tally in self.tallies.items():
            if name == FAST:
                continue
            for attr in ("built", "rejected", "mismatches", "crashes"):
                setattr(total, attr, getattr(total, attr) + getattr(tally, attr))
            out.append(_row(name, tally))
        out.append(_row("all", total))
        if FAST in self.tallies:
            out.append(_row(FAST, self.tallies[FAST]))
        rate = self.graphs / self.seconds if self.seconds else 0.0
        out.append(f"{self.graphs} graphs in {self.seconds:.1f} s ({rate:.1f} graphs/s)")
        if self.failures:
            out.append("")
            out.append(f"{len(self.failures)} failures:")
            for failure in self.failures:
                out += failure.lines()
        else:
            out.append("no mismatches, no crashes")
        return out


def _row(name: str, t: Tally) -> str:
    return f"{name:<18} {t.built:>6} {t.rejected:>9} {t.mismatches:>11} {t.crashes:>8}"


def fuzz(
    graphs: int,
    seed: int = 0,
    fast: int = 0,
    *,
    shrinking: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> FuzzReport:
    """Check `graphs` descriptions drawn from seeds ``seed, seed + 1, ...``; the first
    `fast` of the valid ones also in fast mode (``g.compile(backend="eager")``),
    compared with the interpreter and with the eager graph's outputs.

    Args:
        graphs: how many descriptions.
        seed: the seed of the first.
        fast: how many also in fast mode.
        shrinking: shrink each failure to a smaller description.
        progress: called with ``(done, failures)`` after each description.

    Example:
        >>> report = fuzz(3, seed=11)
        >>> sum(t.built + t.rejected + t.crashes for t in report.tallies.values()) >= 3
        True
    """
    report = FuzzReport(graphs, seed, fast)
    report.tallies = {name: Tally() for name in CATEGORIES}
    if fast:
        report.tallies[FAST] = Tally()
    started = time.perf_counter()
    for index in range(graphs):
        description = describe(seed + index)
        verdict, outputs = run_trial(description)
        report.tallies[description.category].add(verdict)
        if verdict.failed:
            report.failures.append(_failure(description, verdict, False, shrinking))
        if index < fast and not description.invalid:
            fast_verdict, _ = run_trial(description, fast=True, eager_outputs=outputs)
            report.tallies[FAST].add(fast_verdict)
            if fast_verdict.failed:
                report.failures.append(_failure(description, fast_verdict, True, shrinking))
        if progress is not None:
            progress(index + 1, len(report.failures))
    report.seconds = time.perf_counter() - started
    return report


def _failure(description: Description, verdict: Verdict, fast: bool, shrinking: bool) -> Failure:
    shrunk = shrink(description, verdict, fast=fast) if shrinking else None
    return Failure(description, verdict, fast, shrunk)
