"""The dynamic suite's report: Markdown tables a coordinator can paste into the docs."""

from __future__ import annotations

from pathlib import Path

from flowdl._bench.dynamic.run import ARMS, FLOWDL, HAND, DynamicResult, DynamicSuiteResult
from flowdl._bench.stats import Summary
from flowdl._files import write_text_atomic

GOAL = 0.75
"""Issue 17's goal: the best flowdl mode at most 0.75× the best hand-written arm."""


CLOCKS = {
    "wall": "wall time (`time.perf_counter`)",
    "cpu": "CPU time of the process (`time.process_time`), not wall time",
}


def _ms(s: Summary) -> str:
    return f"{s.median * 1e3:.1f} ± {s.spread * 1e3:.1f}"


def _ratio(s: Summary) -> str:
    return f"{s.median:.3f} ± {s.spread:.3f}"


def times_table(models: list[DynamicResult]) -> list[str]:
    """Milliseconds per epoch (median ± scaled MAD), one row per model.

    Example:
        >>> times_table([])[0].startswith("| model |")
        True
    """
    lines = [
        "| model | " + " | ".join(ARMS) + " |",
        "|---|" + "---:|" * len(ARMS),
    ]
    for m in models:
        cells = [_ms(m.summary(a)) + (f" ({m.compiled})" if a == "compiled" else "") for a in ARMS]
        lines.append(f"| {m.name} | " + " | ".join(cells) + " |")
    return lines


def ratio_table(models: list[DynamicResult]) -> list[str]:
    """Paired ratios to the best hand-written arm, the goal, and Dynamo's graph counts.

    Example:
        >>> len(ratio_table([]))
        2
    """
    lines = [
        "| model | best hand-written | flowdl ÷ best | flowdl fast ÷ best | best flowdl ÷ best "
        f"| ≤ {GOAL} | graphs: compiled, fast (then recompiles) | largest difference |",
        "|---|---|---:|---:|---:|---|---|---:|",
    ]
    for m in models:
        hand, best_f = m.best(HAND), m.best(FLOWDL)
        best = m.ratio(best_f, hand)
        graphs = ", ".join(f"{made} ({again})" for made, again in m.graphs.values())
        lines.append(
            f"| {m.name} | {hand} | {_ratio(m.ratio('flowdl', hand))} | "
            f"{_ratio(m.ratio('flowdl fast', hand))} | {_ratio(best)} ({best_f}) | "
            f"{'yes' if best.median <= GOAL else 'no'} | {graphs} | "
            f"{max(m.differences.values()):.1e} |"
        )
    return lines


def markdown(result: DynamicSuiteResult) -> str:
    """The whole report."""
    c = result.config
    lines = [
        "# flowdl bench --suite dynamic",
        "",
        f"Command: `{result.command}`",
        "",
        f"Sizes: batch {c.batch}, width {c.dim}; an epoch is {c.batches} train steps "
        f"(forward, MSE, backward, Adam) over {c.batches} different batches; {c.warmup} "
        f"warm-up epochs, then {c.rounds} paired rounds (arms interleaved, order flipped "
        "every round). Outputs and gradients of every arm were checked against `index` "
        "on the first batch before timing (largest difference relative to scale below).",
        "",
        f"Clock: {CLOCKS[c.clock]}.",
        "",
        "| machine | |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in result.machine.items()),
        "",
        "Milliseconds per epoch, median ± scaled MAD:",
        "",
        *times_table(result.models),
        "",
        "Ratios, round by round (median ± scaled MAD), to the best hand-written arm "
        "(lowest median among index, mask, compiled):",
        "",
        *ratio_table(result.models),
        "",
        f"Total time: {result.seconds:.0f} s.",
        "",
    ]
    return "\n".join(lines)


def write_dynamic_report(path: Path, result: DynamicSuiteResult) -> None:
    """Write the Markdown report to `path` (atomically)."""
    write_text_atomic(path, markdown(result))
