"""`g.svg()`: rendered by Graphviz when it is installed, a clear error when it is not,
files written atomically."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import flowdl as fl
from flowdl._draw.svg import GraphvizError
from flowdl._files import write_text_atomic

needs_graphviz = pytest.mark.skipif(
    shutil.which("dot") is None, reason="Graphviz's dot is not installed (apt-get install graphviz)"
)


def small() -> fl.Graph:
    return (
        fl.Flow(nn.Linear(2, 4))
        .tag('we"ird\\N')
        .gate(fl.SoftmaxRouter(4, 2), nn.Linear(4, 4), nn.Tanh())
        .build()
    )


@needs_graphviz
def test_svg_is_rendered_by_graphviz(tmp_path: Path) -> None:
    g = small()
    text = g.svg()
    assert text.lstrip().startswith("<?xml")
    assert "<svg" in text
    assert text.rstrip().endswith("</svg>")
    assert "router: SoftmaxRouter" in text
    assert "#we&quot;ird\\N" in text  # shown as written: no DOT escape (\N is the node name)
    path = tmp_path / "g.svg"
    assert g.svg(path) == text
    assert path.read_text() == text
    assert [p.name for p in tmp_path.iterdir()] == ["g.svg"]  # no temporary file left


@needs_graphviz
def test_graphviz_accepts_every_drawing_of_the_showcase() -> None:
    from tests.draw.test_showcase import load_showcase

    g = load_showcase().build_showcase()
    for depth in (None, 0, 1):
        assert "<svg" in g.svg(depth=depth)


@needs_graphviz
def test_profiled_svg(tmp_path: Path) -> None:
    g = small()
    g.enable_profiling()
    g(torch.randn(3, 2))
    text = g.svg(tmp_path / "p.svg", profile=True)
    assert "Forward: " in text
    assert '"#e74c3c"' in text  # the slowest node (here the gate's box) is red


def test_missing_graphviz_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH without dot
    g = small()
    with pytest.raises(RuntimeError) as caught:
        g.svg(tmp_path / "g.svg")
    assert isinstance(caught.value, GraphvizError)
    message = str(caught.value)
    assert "needs Graphviz's `dot` program, which is not on PATH" in message
    assert "apt-get install graphviz" in message
    assert "brew install graphviz" in message
    assert "g.dot()" in message
    assert not list(tmp_path.iterdir())  # nothing written
    assert g.dot().startswith("digraph")  # DOT text needs nothing


def test_a_failing_dot_reports_its_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fake = tmp_path / "dot"
    fake.write_text("#!/bin/sh\necho 'syntax error in line 1' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(GraphvizError, match="exit status 3") as caught:
        small().svg()
    assert "syntax error in line 1" in str(caught.value)


def test_svg_into_a_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist; create it first"):
        write_text_atomic(tmp_path / "nope" / "g.svg", "<svg/>")
    assert not (tmp_path / "nope").exists()


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "g.svg"
    path.write_text("old")

    def broken_replace(source: object, target: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        write_text_atomic(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["g.svg"]


def test_written_files_follow_the_umask(tmp_path: Path) -> None:
    path = write_text_atomic(tmp_path / "g.svg", "<svg/>")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
