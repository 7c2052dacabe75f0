"""``create_app(settings)``: the FastAPI application. Everything is built in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import structlog
from fastapi import FastAPI

from agent_runtime import __version__, console
from agent_runtime.api import approvals, artifacts, docs, errors, ops, security, sessions, stream, tasks, webhooks
from agent_runtime.api import openapi as openapi_doc
from agent_runtime.api.body_limit import BodyLimit
from agent_runtime.api.middleware import RequestContext
from agent_runtime.runtime import Overrides, build_runtime, serve_background, stop_runtime
from agent_runtime.services.authn import DISABLED_WARNING, Authenticator
from agent_runtime.services.keys import KeyService
from agent_runtime.settings import Settings
from agent_runtime.store.keys import KeyStore

log = structlog.get_logger(__name__)


async def _authenticator(settings: Settings, runtime_engine: object) -> Authenticator:
    """The request authenticator; in development, the first admin key when none exists (printed
    once on stdout, never logged); a loud warning when authentication is disabled."""
    from sqlalchemy.ext.asyncio import AsyncEngine

    assert isinstance(runtime_engine, AsyncEngine)
    auth = settings.auth
    keys = KeyService(KeyStore(runtime_engine), cache_seconds=auth.key_cache_seconds)
    authenticator = Authenticator(auth, keys)
    if auth.mode == "disabled":
        log.warning("authentication_disabled", message=DISABLED_WARNING)
    elif auth.keys_enabled and settings.server.environment == "development" and auth.bootstrap_admin_key:
        issued = await keys.bootstrap_admin()
        if issued is not None:
            log.warning(
                "admin_key_created", key_id=issued.record.id, message="first start: admin key printed on stdout"
            )
            print(
                "\nagent-runtime: no API key existed, so this admin key was created (subject admin, tenant default).\n"
                "It is shown only now; send it as 'Authorization: Bearer <key>'. Create more with "
                "`agent-runtime keys create`.\n\n"
                f"    {issued.key}\n",
                flush=True,
            )
    elif auth.keys_enabled and await keys.store.count_active() == 0 and auth.mode == "keys":
        log.error("no_api_keys", hint="create one with `agent-runtime keys create --role admin ...`")
    return authenticator


def create_app(settings: Settings, overrides: Overrides | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await build_runtime(settings, overrides)
        app.state.runtime = runtime
        app.state.auth = await _authenticator(settings, runtime.store.engine)
        async with anyio.create_task_group() as tg:
            await serve_background(runtime, tg)
            try:
                yield
            finally:
                await stop_runtime(runtime)
                tg.cancel_scope.cancel()

    app = FastAPI(
        title="agent-runtime",
        version=__version__,
        description="Plan-and-execute tasks with human approval gates, MCP tools and SSE streaming.",
        lifespan=lifespan,
        docs_url=None,  # served with local assets and a CSP by api/docs.py
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_body_bytes)
    security.install(app, settings.cors)
    app.add_middleware(
        RequestContext,
        tracing=lambda: getattr(getattr(app.state, "runtime", None), "tracing", None),
        access_log=settings.server.access_log,
    )
    # The routers' routes go straight onto the app's router instead of through ``include_router``:
    # FastAPI (0.16x) matches an included router's routes once to pick the router and again inside
    # it, on every request, which cost more than the rest of the routing. The routes carry their
    # prefixes, tags and response models themselves (and no dependencies), so the OpenAPI document
    # is the same.
    routers = (tasks.router, artifacts.router, stream.router, approvals.router, ops.router, webhooks.router,
               sessions.router)  # fmt: skip
    for router in routers:
        app.router.routes.extend(router.routes)
    docs.install(app)
    console.install(app)
    openapi_doc.install(app)
    return app
