"""Where the real data lives: ``../shared/data`` next to the repository (or $FLOWDL_DATA_DIR)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def shared_data_dir() -> Path | None:
    """``$FLOWDL_DATA_DIR`` if set, else ``../shared/data`` from the repository root."""
    override = os.environ.get("FLOWDL_DATA_DIR")
    folder = Path(override) if override else ROOT.parent / "shared" / "data"
    return folder if folder.is_dir() else None


@pytest.fixture
def shared_data() -> Path:
    """The real data folder; the test is skipped (with the reason) when it is absent."""
    folder = shared_data_dir()
    if folder is None:
        pytest.skip(
            f"no real data: {ROOT.parent / 'shared' / 'data'} does not exist "
            "(set FLOWDL_DATA_DIR to another folder holding mnist/ and tinyshakespeare/)"
        )
    return folder
