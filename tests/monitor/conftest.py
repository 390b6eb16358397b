"""Fixtures of the monitor tests: a fake clock, and Chromium for the page tests."""

from __future__ import annotations

import pytest

from tests.browser import browser

__all__ = ["FakeClock", "browser"]


class FakeClock:
    """A clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()
