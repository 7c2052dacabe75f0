"""Swagger UI and ReDoc served from the service itself, assets included (no CDN), under a strict CSP.

FastAPI's default pages load their scripts from a CDN, so an offline or air-gapped deployment got a
blank page. The assets come from the ``fastapi-offline`` package's static files; the pages are
FastAPI's own (``get_swagger_ui_html``/``get_redoc_html``) pointed at them, with a per-response nonce
on their inline script and a Content-Security-Policy that allows only this origin. URLs honour the
ASGI ``root_path``, so the pages work behind a reverse proxy with a path prefix. The routes are
public (``Permission.PUBLIC``), like the OpenAPI document they show.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import fastapi_offline
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from agent_runtime.api.auth import GuardedRoute, access
from agent_runtime.domain.identity import Permission

ASSETS = Path(fastapi_offline.__file__).parent / "static"
PREFIX = "/docs-assets"
PUBLIC = access(Permission.PUBLIC)

router = APIRouter(route_class=GuardedRoute)


def _root(request: Request) -> str:
    return str(request.scope.get("root_path", "")).rstrip("/")


def _with_csp(page: HTMLResponse, worker: bool = False) -> HTMLResponse:
    """The page with a nonce on its inline scripts and a policy naming it (ReDoc runs a blob: worker)."""
    nonce = secrets.token_urlsafe(16)
    html = bytes(page.body).decode().replace("<script>", f'<script nonce="{nonce}">')
    csp = (
        f"default-src 'none'; script-src 'nonce-{nonce}' 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
        + ("worker-src blob:; " if worker else "")
        + "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )
    return HTMLResponse(html, headers={"Content-Security-Policy": csp, "Cache-Control": "no-store"})


@router.get("/docs", include_in_schema=False, openapi_extra=PUBLIC)
async def swagger(request: Request) -> HTMLResponse:
    root = _root(request)
    return _with_csp(
        get_swagger_ui_html(
            openapi_url=f"{root}{request.app.openapi_url}",
            title=f"{request.app.title} — API",
            oauth2_redirect_url=f"{root}/docs/oauth2-redirect",
            swagger_js_url=f"{root}{PREFIX}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{PREFIX}/swagger-ui.css",
            swagger_favicon_url=f"{root}{PREFIX}/favicon.png",
        )
    )


@router.get("/docs/oauth2-redirect", include_in_schema=False, openapi_extra=PUBLIC)
async def swagger_redirect() -> HTMLResponse:
    return _with_csp(get_swagger_ui_oauth2_redirect_html())


@router.get("/redoc", include_in_schema=False, openapi_extra=PUBLIC)
async def redoc(request: Request) -> HTMLResponse:
    root = _root(request)
    return _with_csp(
        get_redoc_html(
            openapi_url=f"{root}{request.app.openapi_url}",
            title=f"{request.app.title} — API reference",
            redoc_js_url=f"{root}{PREFIX}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{PREFIX}/favicon.png",
            with_google_fonts=False,
        ),
        worker=True,
    )


def install(app: FastAPI) -> None:
    """The pages, and their static assets (public files of a package, not an API route)."""
    app.router.routes.extend(router.routes)
    app.mount(PREFIX, StaticFiles(directory=ASSETS), name="docs-assets")
