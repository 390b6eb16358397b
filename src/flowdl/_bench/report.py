"""Write a `SuiteResult` as Markdown (tables with spreads) or JSON (every raw time).

A Markdown file that already holds the results markers gets only the text between
them replaced, so hand-written text around the tables (``docs/benchmark.md``)
survives a re-run.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path
from typing import Any

from flowdl._bench.protocol import PROTOCOLS
from flowdl._bench.stats import Summary
from flowdl._bench.suite import ModelResult, SuiteResult

BEGIN = "<!-- results: begin (written by python -m flowdl bench; edits inside are lost) -->"
END = "<!-- results: end -->"
TARGET = 1.05
"""flowdl ÷ PyTorch that a model should stay under."""


def table(header: list[str], rows: list[list[str]]) -> str:
    """A Markdown table.

    Example:
        >>> print(table(["a", "b"], [["1", "2"]]))
        | a | b |
        |---|---|
        | 1 | 2 |
    """
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def pm(summary: Summary, factor: float = 1.0, digits: int = 1) -> str:
    """``median ± spread``, both times `factor`.

    Example:
        >>> pm(Summary(0.0123, 0.0004, 5), 1e3)
        '12.3 ± 0.4'
    """
    return f"{summary.median * factor:.{digits}f} ± {summary.spread * factor:.{digits}f}"


def quotient(a: Summary, b: Summary) -> Summary:
    """``a / b`` of two unpaired medians; the spread propagates the relative spreads.

    Example:
        >>> quotient(Summary(2.0, 0.2, 5), Summary(4.0, 0.0, 5))
        Summary(median=0.5, spread=0.05, n=5)
    """
    value = a.median / b.median
    spread = value * math.hypot(a.spread / a.median, b.spread / b.median)
    return Summary(value, spread, min(a.n, b.n))


def render_results(result: SuiteResult) -> str:
    """The results section: setup, model ratios, sizes, operations, overhead."""
    parts = [_setup(result), _ratios(result), _models(result)]
    if result.ops:
        parts.append(_ops(result))
    if result.overhead:
        parts.append(_overhead(result))
    return "\n\n".join(parts) + "\n"


def render_document(result: SuiteResult) -> str:
    """A whole Markdown page: a title, the protocol in one paragraph, the results."""
    return (
        "# flowdl benchmark\n\n"
        "floDl's ten models, each written in plain PyTorch and as a flowdl graph with the "
        "same weights, trained on the same batches in interleaved rounds in one process. "
        "Times are medians ± scaled MAD (1.4826 × median absolute deviation) over rounds; "
        "a ratio is the median ± scaled MAD of the round-by-round ratios.\n\n"
        f"{BEGIN}\n{render_results(result)}{END}\n"
    )


def write_markdown(path: Path, result: SuiteResult) -> None:
    """Write the results into `path`: between its markers if it has them, else a new page."""
    old = path.read_text() if path.exists() else ""
    if BEGIN in old and END in old.split(BEGIN, 1)[1]:
        head, rest = old.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = f"{head}{BEGIN}\n{render_results(result)}{END}{tail}"
    else:
        text = render_document(result)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def to_json(result: SuiteResult) -> dict[str, Any]:
    """Every setting and raw time, plus the summaries, as JSON-ready data."""
    config = asdict(result.config)
    config["device"] = str(result.config.device)
    config["protocols"] = [p.key for p in result.config.protocols]
    models = []
    for m in result.models:
        entry = asdict(m)
        entry["summary"] = {
            "pytorch": asdict(m.pytorch_summary),
            "flowdl": asdict(m.flowdl_summary),
            "ratio": asdict(m.ratio),
        }
        models.append(entry)
    return {
        "command": result.command,
        "seconds": result.seconds,
        "machine": result.machine,
        "config": config,
        "models": models,
        "ops": [asdict(r) for r in result.ops],
        "overhead": [asdict(r) for r in result.overhead],
    }


def write_report(path: Path, result: SuiteResult) -> None:
    """JSON if `path` ends in ``.json``, else Markdown."""
    if path.suffix == ".json":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(to_json(result), indent=1) + "\n")
    else:
        write_markdown(path, result)


# ------------------------------------------------------------------ sections


def _setup(result: SuiteResult) -> str:
    m, c = result.machine, result.config
    cpu = f"{m['cpu']} ({m['cpu cores']} cores), {m['torch threads']} torch threads"
    rows = [
        ["command", f"`{result.command}`"],
        ["date", f"{m['date']} (the run took {result.seconds / 60:.1f} min)"],
        ["device", m["device"] + (f" ({m['gpu']}, CUDA {m['cuda']})" if "gpu" in m else "")],
        ["CPU", cpu],
        ["software", f"torch {m['torch']}, Python {m['python']}, flowdl {m['flowdl']}"],
        ["platform", m["platform"]],
        [
            "protocol",
            f"scale {c.scale:g}, {c.batches} batches per epoch, {c.warmup} warm-up epochs, "
            f"{c.rounds} interleaved rounds per arm, seed {c.seed}",
        ],
    ]
    return "## Setup\n\n" + table(["", ""], rows)


def _by_model(result: SuiteResult) -> dict[str, dict[str, ModelResult]]:
    grouped: dict[str, dict[str, ModelResult]] = {}
    for m in result.models:
        grouped.setdefault(m.name, {})[m.protocol] = m
    return grouped


def _ratios(result: SuiteResult) -> str:
    keys = [p.key for p in result.config.protocols]
    header = ["model"]
    for key in keys:
        title = PROTOCOLS[key].title
        header += [f"{title}: PyTorch ms", "flowdl ms", "**flowdl ÷ PyTorch**"]
    both = {"flodl", "tuned"} <= set(keys)
    if both:
        header.append("tuned ÷ floDl's PyTorch")
    rows, over = [], []
    for name, runs in _by_model(result).items():
        row = [name]
        for key in keys:
            r = runs[key]
            row += [pm(r.pytorch_summary, 1e3), pm(r.flowdl_summary, 1e3), pm(r.ratio, digits=3)]
            if r.ratio.median > TARGET:
                over.append(f"{name} ({PROTOCOLS[key].title}, {r.ratio.median:.3f})")
        if both:
            row.append(
                pm(quotient(runs["tuned"].pytorch_summary, runs["flodl"].pytorch_summary), digits=3)
            )
        rows.append(row)
    n = len(result.models)
    verdict = f"flowdl ÷ PyTorch is at most {TARGET} in {n - len(over)} of {n} runs" + (
        f"; above: {', '.join(over)}." if over else "."
    )
    note = (
        "Milliseconds per epoch (median ± scaled MAD over the rounds). A ratio is the median "
        "± scaled MAD of the round-by-round ratios (the two sides of a round run back to back). "
        "The last column compares the two PyTorch baselines (unpaired: ratio of medians, "
        "relative spreads propagated)."
    )
    return (
        "## flowdl ÷ hand-written PyTorch\n\n"
        + note
        + "\n\n"
        + table(header, rows)
        + "\n\n"
        + verdict
    )


def _models(result: SuiteResult) -> str:
    rows = []
    for name, runs in _by_model(result).items():
        first = next(iter(runs.values()))
        sizes = ", ".join(f"{k} {v}" for k, v in first.sizes.items())
        adam = ", ".join(f"{PROTOCOLS[k].title}: {r.adam}" for k, r in runs.items())
        rows.append([name, sizes, f"{first.parameters:,}", adam, first.formulation])
    header = ["model", "sizes", "parameters", "Adam", "flowdl formulation"]
    return "## Models at this scale\n\n" + table(header, rows)


def _ops(result: SuiteResult) -> str:
    rows = [
        [
            r.name,
            pm(r.direct, 1e6, 2),
            pm(r.graph, 1e6, 2),
            f"{(r.graph.median - r.direct.median) * 1e6:+.2f}",
            pm(r.ratio, digits=3),
        ]
        for r in result.ops
    ]
    header = ["operation", "PyTorch µs", "flowdl µs", "difference µs", "flowdl ÷ PyTorch"]
    note = (
        "go-torch's table: one operation per call, directly and as the smallest flowdl graph "
        "(`fl.Flow(op)`, a second operand from `.input('b').using('b')`). Microseconds per "
        "call; the difference (of the medians) is the cost of calling a graph."
    )
    return "## Single operations\n\n" + note + "\n\n" + table(header, rows)


def _overhead(result: SuiteResult) -> str:
    nodes = result.overhead[0].nodes
    rows = [
        [
            r.case,
            pm(r.sequential, 1e6),
            pm(r.graph, 1e6),
            pm(r.ratio, digits=3),
            pm(r.per_node, 1e6, 3),
        ]
        for r in result.overhead
    ]
    header = ["case", "nn.Sequential µs", "flowdl µs", "flowdl ÷ Sequential", "µs per node"]
    note = (
        f"A {nodes}-node chain (Linear(64, 64) / ReLU at batch 32, or `nn.Identity` nodes that "
        "do no work) against the same `nn.Sequential`: microseconds per call, and the "
        "difference per node (round by round). The Identity row is the executor's own cost."
    )
    return "## Executor overhead per node\n\n" + note + "\n\n" + table(header, rows)
