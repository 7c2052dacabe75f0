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
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
import pytest
import uvicorn
from anyio.from_thread import BlockingPortal, start_blocking_portal
from playwright.sync_api import Browser, BrowserType, ConsoleMessage, Page, Playwright, Request, expect, sync_playwright
from starlette.types import ASGIApp, Receive, Scope, Send

from agent_runtime.client import Client
from tests.console.issuer import AUDIENCE, AuthorizationServer, serve_authorization_server
from tests.support.harness import Live, _Server, live_service, write_registry
from tests.support.identity import auth_settings, make_key

CHROMIUM = Path("/usr/bin/chromium")
POLICY = """\
plan_rules:
  - id: expiring
    match: {metadata: {expiring: "yes"}}
    decision: require_approval
    expire_after: 2h
  - id: tight-budget
    match: {any_tool: {name: ["example.multiply"]}}
    decision: require_approval
    budget: {tool_calls: 1}
call_rules:
  - id: gate-echo
    description: every echo waits for an approver, its arguments on screen
    match: {name: ["example.echo"]}
    decision: require_call_approval
    roles: [approver]
"""
"""The shared service's policy: calls to ``example.echo`` stop at a gate (the call-gate tests), a
plan with ``example.multiply`` may make one tool call (the budget test), and a task submitted with
metadata ``expiring: "yes"`` waits two hours for its approval (the expiry test); the other tests'
plans use other tools, and wait for one approver (the default)."""
BROKEN_SERVER = "the broken server cannot find its configuration"
REGISTRY_EXTRA = f"""\
    tools:
      wait: {{idempotent: false}}
  - id: broken
    type: local_stdio
    config:
      command: ${{PYTHON}}
      args: ["-c", "import sys; print('{BROKEN_SERVER}', file=sys.stderr); sys.exit(3)"]
"""
"""The example server, with ``wait`` not safe to repeat (a call of it cut off by a lost lease is in
doubt: the in-doubt test), and a server that writes to stderr and exits at start (the tools page)."""


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args: dict[str, Any]) -> dict[str, Any]:
    if not CHROMIUM.exists():
        pytest.skip(
            "console tests need Debian's Chromium at /usr/bin/chromium (apt-get install -y chromium); "
            "Playwright cannot download its own browsers here"
        )
    return {**browser_type_launch_args, "executable_path": str(CHROMIUM), "args": ["--no-sandbox"]}


# Playwright's synchronous API keeps an event loop running on the main thread while it is started,
# and async tests cannot run then: so Playwright, the browser and the service live only as long as
# this package's tests (pytest-playwright's own fixtures are session-wide).
@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    pw = sync_playwright().start()
    yield pw
    pw.stop()


@pytest.fixture(scope="package")
def browser_type(playwright: Playwright, browser_name: str) -> BrowserType:
    return playwright.chromium


@pytest.fixture(scope="package")
def browser(browser_type: BrowserType, browser_type_launch_args: dict[str, Any]) -> Iterator[Browser]:
    launched = browser_type.launch(**browser_type_launch_args)
    yield launched
    launched.close()


@pytest.fixture(scope="package")
def browser_context_args() -> dict[str, Any]:
    return {}


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
    issuer: AuthorizationServer
    """The OpenID Connect issuer the service also trusts (``auth.mode: keys+oidc``)."""

    @property
    def url(self) -> str:
        return self.live.url

    def client(self, key: str | None = None) -> Client:
        return Client(self.url, api_key=key or self.submitter)

    def submit(self, prompt: str, **metadata: Any) -> str:
        with self.client() as client:
            return client.submit(prompt, metadata or None).id


@pytest.fixture(scope="package")
def service(tmp_path_factory: pytest.TempPathFactory, browser_type_launch_args: dict[str, Any]) -> Iterator[Service]:
    # (Depends on browser_type_launch_args so the service is not started when Chromium is absent.)
    tmp = tmp_path_factory.mktemp("console-service")
    policy = tmp / "policy.yaml"
    policy.write_text(POLICY)
    with serve_authorization_server() as issuer, start_blocking_portal() as portal:
        oidc = {"issuer": issuer.issuer.url, "audience": AUDIENCE, "jwks_refresh_cooldown_seconds": 0}
        registry = write_registry(tmp, extra=REGISTRY_EXTRA)
        settings = auth_settings(
            tmp, registry=registry, policy={"path": str(policy)}, auth={"mode": "keys+oidc", "oidc": oidc}
        )
        with portal.wrap_async_context_manager(live_service(settings)) as live:
            submitter, approver, admin = (
                portal.call(make_key, live, subject, "default", role)
                for subject, role in (("sam", "submitter"), ("alice", "approver"), ("root", "admin"))
            )
            yield Service(live, portal, submitter, approver, admin, issuer)


PREFIX = "/ops/agents"


class PrefixProxy:
    """A reverse proxy publishing the service under ``PREFIX``, in one of its two usual set-ups:

    * ``strip``: the proxy removes the prefix (nginx ``location /p/ { proxy_pass http://svc/; }``),
      and the service knows nothing of it;
    * ``root_path``: the proxy keeps the prefix and the service runs with ``--root-path`` (the app
      sees ``root_path`` = the prefix).

    Nothing outside the prefix reaches the service (404, as the proxy would route it elsewhere).
    """

    def __init__(self, app: ASGIApp, prefix: str, mode: str) -> None:
        self.app, self.prefix, self.mode = app, prefix, mode

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if not (path == self.prefix or path.startswith(self.prefix + "/")):
            await send({"type": "http.response.start", "status": 404, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"not behind the prefix"})
            return
        if self.mode == "strip":
            inner = path[len(self.prefix) :] or "/"
            scope = {**scope, "path": inner, "raw_path": inner.encode()}
        else:
            scope = {**scope, "root_path": self.prefix}
        await self.app(scope, receive, send)


@asynccontextmanager
async def _serve_behind_prefix(app: ASGIApp, mode: str) -> AsyncIterator[str]:
    """The already running app served a second time, on another port, behind :class:`PrefixProxy`
    (no second lifespan: the first server's runtime serves both)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = _Server(uvicorn.Config(PrefixProxy(app, PREFIX, mode), log_config=None, lifespan="off"))
    async with anyio.create_task_group() as tg:
        tg.start_soon(server.serve, [sock])
        with anyio.fail_after(30):
            await server.ready.wait()
        try:
            yield f"http://127.0.0.1:{sock.getsockname()[1]}{PREFIX}"
        finally:
            server.should_exit = True
    sock.close()


@pytest.fixture(params=["strip", "root_path"])
def prefixed_url(service: Service, request: pytest.FixtureRequest) -> Iterator[str]:
    """The service's URL behind a path prefix, as a reverse proxy would publish it."""
    with service.portal.wrap_async_context_manager(_serve_behind_prefix(service.live.app, request.param)) as url:
        yield url


@dataclass
class Console:
    """A browser page on the console, with what went wrong on it."""

    page: Page
    service: Service
    shots: Path
    origins: set[str]
    """Where the page may send requests: the service (and, in the prefix test, its proxy)."""
    problems: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow_console_error(self, pattern: str) -> None:
        """An expected console error, e.g. Chromium's line about a 422 the test provokes on purpose."""
        self.allowed.append(re.compile(pattern))

    def open(self, fragment: str = "", base: str | None = None) -> None:
        self.page.goto(f"{base or self.service.url}/console/{fragment}")

    def sign_in(self, key: str | None = None, base: str | None = None) -> None:
        self.open(base=base)
        self.page.get_by_label("API key").fill(key or self.service.approver)
        self.page.get_by_role("button", name="Sign in", exact=True).click()
        expect(self.page.get_by_role("heading", name="Inbox")).to_be_visible()

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


@pytest.fixture
def console(page: Page, service: Service, output_path: str) -> Iterator[Console]:
    shots = Path(output_path)
    shots.mkdir(parents=True, exist_ok=True)
    con = Console(page, service, shots, origins={_origin(service.url)})

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            con.problems.append(f"console error: {message.text}")

    def on_request(request: Request) -> None:
        parts = urlsplit(request.url)
        if parts.scheme in ("http", "https", "ws", "wss") and _origin(request.url) not in con.origins:
            con.problems.append(f"request to another host: {request.url}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: con.problems.append(f"uncaught exception: {error}"))
    page.on("request", on_request)
    page.set_default_timeout(20_000)
    expect.set_options(timeout=20_000)
    yield con
    unexpected = [p for p in con.problems if not any(a.search(p) for a in con.allowed)]
    assert unexpected == [], "\n".join(unexpected)
