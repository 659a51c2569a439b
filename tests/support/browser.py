"""Debian's chromium for browser tests, driven by Playwright (`playwright install` cannot
download here). Missing chromium skips outside CI and fails in CI (`.ci/run` installs it)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags chromium keeps trying hosts this machine cannot reach.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Tests play human visitors: without this, navigator.webdriver is true and the tracker
    # (rightly) treats the page as a robot. AUTOMATED_ARGS keep it for the robot tests.
    "--disable-blink-features=AutomationControlled",
]
AUTOMATED_ARGS = CHROMIUM_ARGS[:-1]


def require_chromium() -> None:
    if Path(CHROMIUM).exists():
        return
    message = f"{CHROMIUM} is not installed (apt-get install chromium, or run .ci/run)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)
