"""Fixed seeds for every test; one headless Chromium (``browser``) for the page tests."""

from __future__ import annotations

import random

import pytest
import torch

from tests.browser import browser

__all__ = ["browser"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    random.seed(0)
    torch.manual_seed(0)
