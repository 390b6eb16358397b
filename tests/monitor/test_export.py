"""export_csv: exact contents, empty cells for missing figures, atomic writes."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import flowdl as fl
from flowdl._files import write_text_atomic
from flowdl._monitor.export import csv_text
from flowdl._monitor.record import EpochRecord
from tests.monitor.conftest import FakeClock


def test_csv_exactly(tmp_path: Path, clock: FakeClock) -> None:
    monitor = fl.Monitor(4, output=io.StringIO(), resources=False, clock=clock)
    clock.advance(2.0)
    monitor.log(1, {"loss": 0.5})
    clock.advance(1.0)
    monitor.log(2, {"loss": 0.25, "val, acc": 0.75})
    clock.advance(1.0)
    monitor.log(3, {"val, acc": float("nan")})
    written = monitor.export_csv(tmp_path / "run.csv")
    assert written == tmp_path / "run.csv"
    assert written.read_bytes().decode() == (
        'epoch,duration_s,elapsed_s,eta_s,loss,"val, acc"\r\n'
        "1,2.0,2.0,6.0,0.5,\r\n"
        "2,1.0,3.0,2.0,0.25,0.75\r\n"
        "3,1.0,4.0,1.0,,nan\r\n"
    )


def test_csv_of_no_epochs_is_a_header(tmp_path: Path) -> None:
    monitor = fl.Monitor(2, output=io.StringIO(), resources=False)
    assert monitor.export_csv(tmp_path / "a.csv").read_bytes() == (
        b"epoch,duration_s,elapsed_s,eta_s\r\n"
    )


def test_csv_has_resource_columns(tmp_path: Path) -> None:
    monitor = fl.Monitor(2, output=io.StringIO())
    monitor.log(1, {"loss": 1.0})
    text = monitor.export_csv(tmp_path / "r.csv").read_bytes().decode()
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0])[-4:] == [
        "cpu_percent",
        "ram_percent",
        "ram_used_bytes",
        "process_rss_bytes",
    ]
    assert 0 <= float(rows[0]["cpu_percent"]) <= 100
    assert float(rows[0]["process_rss_bytes"]) > 0


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=1, max_size=8)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.dictionaries(names, st.floats(allow_nan=False), max_size=4), max_size=5))
def test_csv_reads_back(epochs: list[dict[str, float]]) -> None:
    records = [
        EpochRecord(i + 1, 1.0, float(i + 1), 0.5, {f"m {k}": v for k, v in metrics.items()})
        for i, metrics in enumerate(epochs)
    ]
    rows = list(csv.DictReader(io.StringIO(csv_text(records), newline="")))
    assert len(rows) == len(records)
    for row, record in zip(rows, records, strict=True):
        for name, value in row.items():
            if name.startswith("m "):
                if name in record.metrics:
                    assert float(value) == record.metrics[name]
                else:
                    assert value == ""


def test_missing_folder_is_explained(tmp_path: Path) -> None:
    monitor = fl.Monitor(2, output=io.StringIO(), resources=False)
    with pytest.raises(FileNotFoundError, match="does not exist; create it first"):
        monitor.export_csv(tmp_path / "nope" / "run.csv")


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "run.csv"
    target.write_text("old\n")

    def broken_replace(source: str, destination: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(target, "new\n")
    assert target.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.csv"]


def test_atomic_write_replaces_and_leaves_no_temporary(tmp_path: Path) -> None:
    target = tmp_path / "page.html"
    write_text_atomic(target, "one")
    write_text_atomic(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]
    with pytest.raises(IsADirectoryError):
        write_text_atomic(tmp_path, "x")
