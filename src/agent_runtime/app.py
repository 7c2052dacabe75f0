"""``create_app(settings)``: the FastAPI application. Everything is built in the lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI

from agent_runtime import __version__
from agent_runtime.api import docs, errors, ops, stream, tasks
from agent_runtime.api import openapi as openapi_doc
from agent_runtime.api.body_limit import BodyLimit
from agent_runtime.api.middleware import RequestContext
from agent_runtime.runtime import Overrides, build_runtime, serve_background, stop_runtime
from agent_runtime.settings import Settings


def create_app(settings: Settings, overrides: Overrides | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await build_runtime(settings, overrides)
        app.state.runtime = runtime
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
        docs_url=None,  # served with local assets by api/docs.py
        redoc_url=None,
    )
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=settings.limits.max_body_bytes)
    app.add_middleware(RequestContext, tracing=lambda: getattr(getattr(app.state, "runtime", None), "tracing", None))
    # The routers' routes go straight onto the app's router instead of through ``include_router``:
    # FastAPI (0.16x) matches an included router's routes once to pick the router and again inside
    # it, on every request, which cost more than the rest of the routing. The routes carry their
    # prefixes, tags and response models themselves (and no dependencies), so the OpenAPI document
    # is the same.
    for router in (tasks.router, stream.router, ops.router):
        app.router.routes.extend(router.routes)
    docs.install(app)
    openapi_doc.install(app)
    return app
