"""The Markdown report is well formed and says what was measured; JSON keeps every time."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from flowdl._bench.ops import OpResult
from flowdl._bench.overhead import OverheadResult
from flowdl._bench.protocol import FLODL, TUNED
from flowdl._bench.report import BEGIN, END, render_document, table, write_report
from flowdl._bench.stats import Summary
from flowdl._bench.suite import ModelResult, SuiteConfig, SuiteResult

MACHINE = {
    "date": "2026-01-02 03:04 UTC",
    "cpu": "Some CPU",
    "cpu cores": "2",
    "torch threads": "1",
    "torch": "2.13.0+cpu",
    "python": "3.11.7",
    "platform": "Linux",
    "flowdl": "0.1.0",
    "device": "cpu",
}


def model(name: str, protocol: str, pytorch: list[float], flowdl: list[float]) -> ModelResult:
    return ModelResult(
        name, protocol, {"batch": 4}, 123, 1.5, "fused", "a `.through` chain", pytorch, flowdl
    )


def suite_result() -> SuiteResult:
    config = SuiteConfig(
        models=("mlp", "gru_seq"),
        protocols=(FLODL, TUNED),
        scale=0.25,
        batches=20,
        warmup=2,
        rounds=3,
        device=torch.device("cpu"),
    )
    result = SuiteResult(config, MACHINE, "python -m flowdl bench --scale 0.25", seconds=390.0)
    result.models = [
        model("mlp", "flodl", [0.020, 0.020, 0.020], [0.020, 0.021, 0.019]),
        model("mlp", "tuned", [0.010, 0.010, 0.010], [0.0105, 0.0105, 0.0105]),
        model("gru_seq", "flodl", [0.040, 0.040, 0.040], [0.044, 0.044, 0.044]),
        model("gru_seq", "tuned", [0.030, 0.030, 0.030], [0.030, 0.030, 0.030]),
    ]
    result.ops = [
        OpResult("add 128", Summary(4e-6, 1e-8, 3), Summary(1e-5, 1e-8, 3), Summary(2.5, 0.01, 3))
    ]
    result.overhead = [
        OverheadResult(
            "Identity forward",
            20,
            Summary(3e-5, 1e-6, 3),
            Summary(3.3e-5, 1e-6, 3),
            Summary(1.1, 0.01, 3),
            Summary(1.5e-7, 1e-8, 3),
        )
    ]
    return result


def tables(markdown: str) -> list[list[list[str]]]:
    """Every table of `markdown`, as rows of cells."""
    found: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*markdown.splitlines(), ""]:
        if line.startswith("|"):
            assert line.endswith("|"), line
            current.append([cell.strip() for cell in line.strip("|").split("|")])
        elif current:
            found.append(current)
            current = []
    return found


def test_table() -> None:
    assert (
        table(["a", "b"], [["1", "2"], ["3", "4"]]) == "| a | b |\n|---|---|\n| 1 | 2 |\n| 3 | 4 |"
    )


def test_the_document_is_well_formed() -> None:
    text = render_document(suite_result())
    found = tables(text)
    assert len(found) == 5  # setup, ratios, models, operations, overhead
    for rows in found:
        header, rule, *body = rows
        assert all(re.fullmatch(r"-+", cell) for cell in rule)
        assert body
        assert all(len(row) == len(header) == len(rule) for row in body)
    assert text.count(BEGIN) == text.count(END) == 1
    assert "nan" not in text.lower()


def test_the_document_says_what_was_measured() -> None:
    text = render_document(suite_result())
    setup = dict(tuple(row) for row in tables(text)[0][2:])
    assert setup["command"] == "`python -m flowdl bench --scale 0.25`"
    assert setup["date"] == "2026-01-02 03:04 UTC (the run took 6.5 min)"
    assert setup["CPU"] == "Some CPU (2 cores), 1 torch threads"
    assert setup["software"] == "torch 2.13.0+cpu, Python 3.11.7, flowdl 0.1.0"
    assert (
        "scale 0.25, 20 batches per epoch, 2 warm-up epochs, 3 interleaved rounds"
        in setup["protocol"]
    )
    ratios = {row[0]: row[1:] for row in tables(text)[1][2:]}
    assert ratios["mlp"] == [
        "20.0 ± 0.0",
        "20.0 ± 1.5",
        "1.000 ± 0.074",
        "10.0 ± 0.0",
        "10.5 ± 0.0",
        "1.050 ± 0.000",
        "0.500 ± 0.000",
    ]
    assert ratios["gru_seq"][2] == "1.100 ± 0.000"
    assert "at most 1.05 in 3 of 4 runs; above: gru_seq (floDl's settings, 1.100)." in text
    ops = tables(text)[3]
    assert ops[2] == ["add 128", "4.00 ± 0.01", "10.00 ± 0.01", "+6.00", "2.500 ± 0.010"]
    overhead = tables(text)[4]
    assert overhead[2][-1] == "0.150 ± 0.010"


def test_results_replace_only_the_text_between_the_markers(tmp_path: Path) -> None:
    path = tmp_path / "benchmark.md"
    path.write_text(f"# Hand-written title\n\nintro\n\n{BEGIN}\nold results\n{END}\n\nafterword\n")
    write_report(path, suite_result())
    text = path.read_text()
    assert text.startswith("# Hand-written title\n\nintro\n\n")
    assert text.endswith(f"{END}\n\nafterword\n")
    assert "old results" not in text
    assert "| mlp |" in text
    write_report(path, suite_result())
    assert path.read_text() == text


def test_a_new_markdown_file_gets_a_whole_page(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "bench.md"
    write_report(path, suite_result())
    assert path.read_text().startswith("# flowdl benchmark\n")


def test_json_keeps_every_time(tmp_path: Path) -> None:
    path = tmp_path / "bench.json"
    write_report(path, suite_result())
    data = json.loads(path.read_text())
    assert data["command"] == "python -m flowdl bench --scale 0.25"
    assert data["seconds"] == 390.0
    assert data["config"]["protocols"] == ["flodl", "tuned"]
    assert data["config"]["device"] == "cpu"
    first = data["models"][0]
    assert first["pytorch"] == [0.020, 0.020, 0.020]
    assert first["summary"]["ratio"]["median"] == pytest.approx(1.0)
    assert data["ops"][0]["name"] == "add 128"
    assert data["overhead"][0]["per_node"]["median"] == pytest.approx(1.5e-7)
