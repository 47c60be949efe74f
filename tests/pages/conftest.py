"""Browser fixtures: one headless Chromium (Debian's, driven by Playwright) for all the
browser tests, a fresh context per test, and a check that no page raised a script error or
hit the CSP.

The platform is the module-scoped ``platform`` fixture of tests/fixtures/platform.py: one
`tsunagu up` per test module.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from tests.pages.browser import CHROMIUM, CHROMIUM_ARGS, TIMEOUT_MS, PageErrors


# Package scope, not session: while sync Playwright is alive it marks its event loop as
# running in this thread between calls, so any later test calling asyncio.run() would fail
# ("cannot be called from a running event loop"). All browser tests live in this package:
# they still share one browser, closed as soon as they are done.
@pytest.fixture(scope="package")
def browser() -> Iterator[Browser]:
    """Headless Chromium, shared by every browser test."""
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium "
            "(`make chromium` installs it; `make test` does so itself)"
        )
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh browser profile (no storage) as a desktop visitor in Japan."""
    ctx = browser.new_context(
        locale="ja-JP",
        timezone_id="Asia/Tokyo",
        viewport={"width": 1280, "height": 900},
        accept_downloads=True,
    )
    ctx.set_default_timeout(TIMEOUT_MS)
    yield ctx
    ctx.close()


@pytest.fixture
def page_errors() -> PageErrors:
    """Collects what went wrong in the test's pages (checked when the test ends)."""
    return PageErrors()


@pytest.fixture
def page(context: BrowserContext, page_errors: PageErrors) -> Iterator[Page]:
    """A page in a fresh context; the test fails if it raised a script error or hit the CSP."""
    opened = page_errors.watch(context.new_page())
    yield opened
    assert page_errors.seen == [], page_errors.seen
