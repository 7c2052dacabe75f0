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
  connections from this origin only (plus the OpenID Connect issuer's origin when OIDC sign-in is
  configured), no inline script.
* ``GET /console/config.json`` — what the sign-in form needs: the authentication mode and, with OIDC,
  the issuer and client id for the authorization-code flow with PKCE.
* ``/console/assets/…`` — the static files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles

from agent_runtime.api.auth import GuardedRoute, access
from agent_runtime.api.deps import runtime_of
from agent_runtime.domain.identity import Permission

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


def _issuer_origin(request: Request) -> str | None:
    oidc = runtime_of(request).settings.auth
    if not oidc.oidc_enabled or not oidc.oidc.issuer:
        return None
    parts = urlsplit(oidc.oidc.issuer)
    return f"{parts.scheme}://{parts.netloc}"


def console_csp(issuer_origin: str | None) -> str:
    """The page's policy: everything from this origin, nothing inline; the OIDC issuer may be fetched."""
    connect = "'self'" + (f" {issuer_origin}" if issuer_origin else "")
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
        headers={"Content-Security-Policy": console_csp(_issuer_origin(request)), "Cache-Control": "no-cache"},
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
    app.router.routes.extend(router.routes)
    app.mount("/console/assets", StaticFiles(directory=STATIC), name="console-assets")
