"""Opening the viewer's page in Debian's Chromium (Playwright), for the browser tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.conftest import LAUNCH_ARGS

VIEWPORT = {"width": 1300, "height": 1150}


@contextmanager
def chromium(chromium_path: Path) -> Iterator[object]:
    """A headless Chromium launched with the project's arguments, closed after."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(chromium_path), headless=True, args=LAUNCH_ARGS
        )
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def viewer_page(browser: object, url: str) -> Iterator[object]:
    """The viewer at ``url`` in a new browser context, ready; fails on any page error."""
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    page.wait_for_function("window.fusevis && window.fusevis.ready", timeout=30_000)
    yield page
    context.close()
    assert not errors, errors
