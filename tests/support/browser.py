"""Debian's headless Chromium, driven by Playwright (never `playwright install`)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from tests.support.services import require

CHROMIUM = "/usr/bin/chromium"
# Headless Chromium that never calls home (no updates, sync or background fetches).
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@contextlib.contextmanager
def launch_chromium() -> Iterator[Any]:
    """A Playwright browser on the system Chromium; skip locally / fail under CI when missing."""
    require(os.access(CHROMIUM, os.X_OK), f"{CHROMIUM} missing: run `make services` (scripts/install-test-packages.sh)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright is not installed: pip install -r requirements-test.txt")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
