"""What the browser tests share: where Chromium is and how it runs, where screenshots go,
opening a page signed in, and watching pages for script errors and CSP violations."""

from __future__ import annotations

from pathlib import Path

from playwright.sync_api import ConsoleMessage, Page

from tests.fixtures.platform import RunningPlatform

#: Debian's Chromium; `make test` installs it (Playwright's own downloads are not used).
CHROMIUM = Path("/usr/bin/chromium")
#: Headless, and quiet: without the networking flags Chromium keeps calling home.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
#: Screenshots and downloads kept for a person to look at (gitignored).
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"
#: How long a page may take to show what a test waits for.
TIMEOUT_MS = 15_000


class PageErrors:
    """Uncaught script errors and Content-Security-Policy violations seen on pages."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def watch(self, page: Page) -> Page:
        """Record ``page``'s script errors and CSP violations."""
        page.on("pageerror", lambda error: self.seen.append(f"script error: {error}"))
        page.on("console", self._console)
        return page

    def _console(self, message: ConsoleMessage) -> None:
        # API refusals the tests provoke also log "Failed to load resource"; those are
        # expected. A CSP violation never is: it means something inline or foreign.
        if "Content Security Policy" in message.text:
            self.seen.append(f"CSP: {message.text}")


def open_page(page: Page, platform: RunningPlatform, path: str, token: str | None) -> Page:
    """Open ``path`` (``/resident`` or ``/auditor``), signed in with ``token`` through the
    URL fragment, and wait until its first load has finished."""
    fragment = "" if token is None else f"#token={token}"
    # From a blank page: going from /resident to /resident#token=… would only change the
    # fragment, and the wait below would see the previous load as finished.
    page.goto("about:blank")
    page.goto(f"{platform.base_url}{path}{fragment}")
    page.wait_for_selector("body[data-ready='true']", state="attached")
    return page


def screenshot(page: Page, name: str) -> Path:
    """Save a full-page screenshot to tests/artifacts/``name``.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
