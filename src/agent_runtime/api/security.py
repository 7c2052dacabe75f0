"""Browser safety: response headers, a CSP'd Swagger page, CORS, and the OpenAPI security scheme.

* Every response: ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``; any
  HTML response without its own policy gets ``Content-Security-Policy: default-src 'none'``.
* ``/docs`` and ``/redoc`` (``api/docs.py``) carry their own stricter policy with a nonce, and
  load every asset from this origin.
* CORS is off unless ``cors.allow_origins`` lists origins; credentials are bearer headers, never
  cookies, so ``allow_credentials`` stays false.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_runtime.api.auth import SCHEME
from agent_runtime.settings import CorsSettings

STRICT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
_FIXED = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]


class SecurityHeaders:
    """Pure ASGI middleware (streams pass through untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [*message.get("headers", ()), *_FIXED]
                names = {name.lower() for name, _ in headers}
                if b"content-security-policy" not in names and any(
                    name.lower() == b"content-type" and value.startswith(b"text/html") for name, value in headers
                ):
                    headers.append((b"content-security-policy", STRICT_CSP.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def install(app: FastAPI, cors: CorsSettings) -> None:
    if cors.allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=cors.allow_origins,
            allow_methods=["GET", "POST", "PUT", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "Last-Event-ID", "X-Request-ID"],
            expose_headers=["Location", "X-Request-ID"],
            allow_credentials=False,
            max_age=cors.max_age_seconds,
        )
    app.add_middleware(SecurityHeaders)
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        schema.setdefault("components", {}).setdefault("securitySchemes", {})[SCHEME] = {
            "type": "http",
            "scheme": "bearer",
            "description": "An API key (`agent-runtime keys create`, starts with `ar_`) or, with auth.mode "
            "oidc, a JWT from the configured issuer.",
        }
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
