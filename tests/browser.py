"""Headless Chromium for the page tests, driven with Playwright.

Playwright talks to the system's Chromium (``/usr/bin/chromium``, Debian's
``chromium`` package in CI) through ``executable_path``: no browser is ever
downloaded. It was chosen over raw DevTools-protocol calls because it waits for
conditions (``wait_for_function``), reports page errors and takes element
screenshots with a few lines each, and its Python package is an ordinary PyPI wheel.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Iterator
from typing import Any

import pytest

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]


def chromium_path() -> str | None:
    """The Chromium binary: ``$FLOWDL_CHROMIUM``, ``chromium`` on PATH, or /usr/bin/chromium."""
    for candidate in (
        os.environ.get("FLOWDL_CHROMIUM"),
        shutil.which("chromium"),
        "/usr/bin/chromium",
    ):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium for the tests of one module (skips only when none is installed).

    Module scope, not session: while Playwright's sync API is active an asyncio loop
    runs on the main thread, which later tests of other modules must not inherit.
    """
    path = chromium_path()
    if path is None:
        pytest.skip("Chromium is not installed (apt-get install chromium) - browser tests skipped")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=path, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


class PageWatch:
    """A new page that records page errors, console errors and every request it makes."""

    def __init__(self, browser: Any, width: int = 1280, height: int = 1000) -> None:
        self.page = browser.new_page(viewport={"width": width, "height": height})
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("pageerror", lambda error: self.errors.append(str(error)))
        self.page.on(
            "console",
            lambda message: self.errors.append(message.text) if message.type == "error" else None,
        )
        self.page.on("request", lambda request: self.requests.append(request.url))

    def close(self) -> None:
        self.page.close()


def colour_pixels(png: bytes, colour: str, tolerance: int = 40) -> int:
    """How many pixels of the PNG `png` are within `tolerance` of `colour` (``#rrggbb``)."""
    from PIL import Image

    want = tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))
    data = Image.open(io.BytesIO(png)).convert("RGB").tobytes()
    red, green, blue = data[0::3], data[1::3], data[2::3]
    return sum(
        1
        for pixel in zip(red, green, blue, strict=True)
        if all(abs(got - target) <= tolerance for got, target in zip(pixel, want, strict=True))
    )
