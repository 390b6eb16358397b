"""`benchmarks/checkpoint_io.py` runs at a toy size: every arm, the table and the ratios.

The arms run in this process (``--same-process``) to keep the test fast; the script's
own runs give each arm a fresh process.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "checkpoint_io.py"


def test_the_checkpoint_benchmark_runs_at_a_toy_size(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = importlib.util.spec_from_file_location("checkpoint_io", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["checkpoint_io"] = module
    try:
        spec.loader.exec_module(module)
        module.main(["--mb", "0.5", "--layers", "2", "--adam", "--rounds", "2",
                     "--dir", str(tmp_path), "--same-process"])  # fmt: skip
    finally:
        del sys.modules["checkpoint_io"]
    out = capsys.readouterr().out
    for arm in ("save flowdl", "save safetensors", "load flowdl", "load safetensors+read"):
        assert f"| {arm} |" in out, out
    assert "| save flowdl ÷ save safetensors |" in out
    assert "| load flowdl ÷ load safetensors+read |" in out
    assert "+ Adam state" in out
    assert list(tmp_path.iterdir()) == []  # its files are removed
