"""The console in a real browser: Debian's Chromium driven by Playwright, against one live service.

One service (SQLite, API keys on, the offline test model and the example MCP server) serves every
test of this directory; it runs in its own event loop on a background thread, so the tests use
Playwright's synchronous API. One browser is shared too (pytest-playwright's session ``browser``);
each test gets a fresh page (a new context: empty sessionStorage).

Every page fails its test on a console error, an uncaught exception, or a request to any host other
than the service.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from playwright.sync_api import ConsoleMessage, Page, Request, expect

from agent_runtime.client import Client
from tests.support.harness import Live, live_service
from tests.support.identity import auth_settings, make_key

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not CHROMIUM.exists():
        pytest.skip(
            "console tests need Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium); "
            "Playwright cannot download its own browsers here"
        )
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": ["--no-sandbox"]}


@pytest.fixture(scope="session")
def base_url() -> str | None:
    """Replaces pytest-base-url's fixture (a session fixture written as an instance method, which
    pytest 9 warns about, and this suite turns warnings into errors). Pages here use full URLs."""
    return None


@dataclass
class Service:
    live: Live
    portal: BlockingPortal
    submitter: str
    """sam's key (submitter): submits the tasks, through the Python client."""
    approver: str
    """alice's key (approver): signs in to the console (the submitter may not approve its own task)."""
    admin: str

    @property
    def url(self) -> str:
        return self.live.url

    def client(self, key: str | None = None) -> Client:
        return Client(self.url, api_key=key or self.submitter)

    def submit(self, prompt: str, **metadata: Any) -> str:
        with self.client() as client:
            return client.submit(prompt, metadata or None).id


@pytest.fixture(scope="session")
def service(tmp_path_factory: pytest.TempPathFactory, browser_type_launch_args: dict[str, Any]) -> Iterator[Service]:
    # (Depends on browser_type_launch_args so the service is not started when Chromium is absent.)
    tmp = tmp_path_factory.mktemp("console-service")
    with start_blocking_portal() as portal, portal.wrap_async_context_manager(live_service(auth_settings(tmp))) as live:
        keys = [
            portal.call(make_key, live, subject, "default", role)
            for subject, role in (("sam", "submitter"), ("alice", "approver"), ("root", "admin"))
        ]
        yield Service(live, portal, *keys)


@dataclass
class Console:
    """A browser page on the console, with what went wrong on it."""

    page: Page
    service: Service
    shots: Path
    problems: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow_console_error(self, pattern: str) -> None:
        """An expected console error, e.g. Chromium's line about a 422 the test provokes on purpose."""
        self.allowed.append(re.compile(pattern))

    def open(self, fragment: str = "") -> None:
        self.page.goto(f"{self.service.url}/console/{fragment}")

    def sign_in(self, key: str | None = None) -> None:
        self.open()
        self.page.get_by_label("API key").fill(key or self.service.approver)
        self.page.get_by_role("button", name="Sign in").click()
        expect(self.page.get_by_role("heading", name="Inbox")).to_be_visible()

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def console(page: Page, service: Service, output_path: str) -> Iterator[Console]:
    shots = Path(output_path)
    shots.mkdir(parents=True, exist_ok=True)
    here = urlsplit(service.url).netloc
    con = Console(page, service, shots)

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            con.problems.append(f"console error: {message.text}")

    def on_request(request: Request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https", "ws", "wss") and parts.netloc != here:
            con.problems.append(f"request to another host: {request.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: con.problems.append(f"uncaught exception: {error}"))
    page.on("request", on_request)
    page.set_default_timeout(20_000)
    expect.set_options(timeout=20_000)
    yield con
    unexpected = [p for p in con.problems if not any(a.search(p) for a in con.allowed)]
    assert unexpected == [], "\n".join(unexpected)
