"""The operator console: static HTML, CSS and JavaScript modules served by the service under ``/console``.

No build step and no third-party asset: the files in ``static/`` are the whole console, shipped in
the wheel with the package. The page talks to the JSON API with the operator's bearer token (kept in
the browser's ``sessionStorage``), so it needs no session, cookie or server-side rendering. Every URL
the page uses is relative, so it works behind a reverse proxy with a path prefix (``root_path``).

Routes (all public, like ``/docs``: the page and its assets hold no data; the API calls it makes
need a token):

* ``GET /`` — a small page linking the console and the API reference.
* ``GET /console`` — redirects to ``console/`` (relative, so a path prefix is kept).
* ``GET /console/`` — the page, under a strict Content-Security-Policy: scripts, styles and
  connections from this origin only (plus, when OIDC sign-in is configured, the issuer's origin and
  the origin of the token endpoint its discovery document names, which may be another host), no
  inline script.
* ``GET /console/config.json`` — what the sign-in form needs: the authentication mode and, with OIDC,
  the issuer and client id for the authorization-code flow with PKCE.
* ``/console/assets/…`` — the static files.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anyio
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from agent_runtime.api.auth import GuardedRoute, access
from agent_runtime.api.deps import runtime_of
from agent_runtime.domain.identity import Permission
from agent_runtime.services.oidc import discovery

STATIC = Path(__file__).parent / "static"
PUBLIC = access(Permission.PUBLIC)

router = APIRouter(route_class=GuardedRoute)

_HOME = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>agent-runtime</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body><h1>agent-runtime</h1>
<ul><li><a href="console/">Operator console</a></li><li><a href="docs">API reference (Swagger UI)</a></li>
<li><a href="redoc">API reference (ReDoc)</a></li><li><a href="openapi.json">OpenAPI document</a></li></ul>
</body></html>
"""


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


class TokenEndpoints:
    """The token endpoint each OIDC issuer's discovery document names, fetched when the page is
    served (the page posts the authorization code there, so the page's policy must allow it) and
    kept for ``ttl`` seconds; a failed fetch is retried after ``retry`` seconds."""

    def __init__(self, ttl: float = 600, retry: float = 60) -> None:
        self.ttl, self.retry = ttl, retry
        self._known: dict[str, tuple[float, str | None]] = {}

    async def get(self, issuer: str, timeout: float) -> str | None:
        now = time.monotonic()
        cached = self._known.get(issuer)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = await anyio.to_thread.run_sync(_token_endpoint, issuer, timeout)
        self._known[issuer] = (now + (self.ttl if found else self.retry), found)
        return found


def _token_endpoint(issuer: str, timeout: float) -> str | None:
    try:
        endpoint = discovery(issuer, timeout).get("token_endpoint")
    except ValueError:
        return None  # (logged) the page's policy names the issuer only
    return endpoint if isinstance(endpoint, str) and endpoint.startswith(("https://", "http://")) else None


async def _connect_origins(request: Request) -> list[str]:
    """Origins besides this one the page fetches: the OIDC issuer's and its token endpoint's."""
    auth = runtime_of(request).settings.auth
    if not auth.oidc_enabled or not auth.oidc.issuer:
        return []
    origins = [_origin(auth.oidc.issuer)]
    endpoints: TokenEndpoints = request.app.state.console_token_endpoints
    token = await endpoints.get(auth.oidc.issuer, auth.oidc.http_timeout_seconds)
    if token is not None and _origin(token) not in origins:
        origins.append(_origin(token))
    return origins


def console_csp(origins: list[str]) -> str:
    """The page's policy: everything from this origin, nothing inline; ``origins`` may be fetched
    too (the OIDC issuer and its token endpoint)."""
    connect = " ".join(["'self'", *origins])
    return (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src {connect}; manifest-src 'self'; frame-ancestors 'none'; base-uri 'self'; "
        "form-action 'self'"
    )


@router.get("/", include_in_schema=False, openapi_extra=PUBLIC)
async def home() -> HTMLResponse:
    return HTMLResponse(_HOME)


@router.get("/console", include_in_schema=False, openapi_extra=PUBLIC)
async def console_redirect() -> RedirectResponse:
    # Relative, so "/prefix/console" goes to "/prefix/console/" behind a proxy.
    return RedirectResponse("console/", status_code=307)


@router.get("/console/", include_in_schema=False, openapi_extra=PUBLIC)
async def console_page(request: Request) -> FileResponse:
    return FileResponse(
        STATIC / "index.html",
        media_type="text/html; charset=utf-8",
        headers={"Content-Security-Policy": console_csp(await _connect_origins(request)), "Cache-Control": "no-cache"},
    )


@router.get("/console/config.json", include_in_schema=False, openapi_extra=PUBLIC)
async def console_config(request: Request) -> dict[str, Any]:
    settings = runtime_of(request).settings
    auth = settings.auth
    body: dict[str, Any] = {"auth_mode": auth.mode, "keys": auth.keys_enabled, "oidc": None}
    if auth.oidc_enabled:
        # The console is a public client: the client id is the audience the service requires in
        # tokens (an issuer puts the requesting client's id there unless told otherwise).
        body["oidc"] = {"issuer": auth.oidc.issuer, "client_id": auth.oidc.audience, "scope": "openid"}
    return body


def install(app: FastAPI) -> None:
    """The console's routes and its static files."""
    app.state.console_token_endpoints = TokenEndpoints()
    app.router.routes.extend(router.routes)
    app.mount("/console/assets", StaticFiles(directory=STATIC), name="console-assets")
