"""Operational routes: liveness, readiness, metrics, tool catalogue, registry reload."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from agent_runtime.api.auth import GuardedRoute, access, authenticator_of
from agent_runtime.api.deps import runtime_of
from agent_runtime.domain.identity import Permission
from agent_runtime.errors import NotFoundError
from agent_runtime.runtime import Runtime
from agent_runtime.services.authn import DISABLED_WARNING

router = APIRouter(tags=["operations"], route_class=GuardedRoute)
PUBLIC = access(Permission.PUBLIC)


@router.get("/healthz", summary="Liveness: the process serves requests", openapi_extra=PUBLIC)
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database reachable, migrations applied, not draining", openapi_extra=PUBLIC)
async def readyz(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    checks: dict[str, Any] = {"draining": runtime.runner.draining}
    ready = not runtime.runner.draining
    try:
        await runtime.tasks.ping()
        checks["database"] = "ok"
        pending = await runtime.migrations_pending()
        checks["migrations"] = "pending" if pending else "ok"
        ready = ready and not pending
    except Exception as exc:
        checks["database"] = f"unreachable: {type(exc).__name__}"
        ready = False
    checks["tool_servers"] = _tool_servers(runtime)
    body: dict[str, Any] = {"status": "ready" if ready else "unready", "checks": checks}
    if authenticator_of(request).disabled:
        body["warnings"] = [DISABLED_WARNING]
    return JSONResponse(body, status_code=200 if ready else 503)


def _tool_servers(runtime: Runtime) -> dict[str, int]:
    """How many servers have a tool list, are still on their first discovery, or failed the last.
    Informational: readiness does not wait for discovery (the runner does; see runtime.py)."""
    statuses = runtime.catalog.status().values()
    return {
        "ok": sum(1 for s in statuses if s.ok),
        "pending": sum(1 for s in statuses if s.pending),
        "failed": sum(1 for s in statuses if not s.ok and not s.pending),
    }


@router.get("/metrics", summary="Prometheus metrics", openapi_extra=access(Permission.METRICS))
async def metrics(request: Request) -> Response:
    runtime = runtime_of(request)
    if not runtime.settings.observability.metrics_enabled:
        raise NotFoundError("metrics are disabled (observability.metrics_enabled: false)")
    runtime.metrics.set_task_counts(await runtime.tasks.count_by_status())
    live = {server.id: 0 for server in runtime.pool.registry.enabled()} | runtime.pool.live_by_server()
    runtime.metrics.set_mcp_processes(live)
    payload, content_type = runtime.metrics.render(request.headers.get("accept"))
    return Response(payload, media_type=content_type)


@router.get("/v1/tools", summary="The tool catalogue the planner sees", openapi_extra=access(Permission.READ))
async def tools(request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)
    return {
        "tools": [
            {
                "name": t.qualified_name,
                "description": t.description,
                "input_schema": t.input_schema,
                "read_only": t.read_only,
                "idempotent": t.idempotent,
                "destructive": t.destructive,
                "open_world": t.open_world,
                "safe_to_repeat": t.safe_to_repeat,
                "overridden": list(t.overridden),
                "vouched_by": t.vouched_by,
            }
            for t in runtime.catalog.tools()
        ],
        "servers": runtime.catalog.status(),
        "pool": runtime.pool.status(),
    }


@router.post(
    "/v1/admin/reload-tools",
    summary="Reload tool_registry.yaml and refresh the catalogue",
    openapi_extra=access(Permission.ADMIN),
)
async def reload_tools(request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)
    await runtime.reload_tools()
    return {"servers": runtime.catalog.status()}


@router.post(
    "/v1/admin/reload-profiles",
    summary="Reload the agent profiles file; an invalid file answers 422 and the old profiles stay",
    openapi_extra=access(Permission.ADMIN),
)
async def reload_profiles(request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)
    runtime.reload_profiles()
    found = runtime.profiles.profiles
    return {
        "path": str(runtime.profiles.path) if runtime.profiles.path else None,
        "default": found.default,
        "profiles": {name: profile.content_hash() for name, profile in found.profiles.items()},
    }


@router.post(
    "/v1/admin/reload-policy",
    summary="Reload the approval policy file; an invalid file answers 422 and the old policy stays",
    openapi_extra=access(Permission.ADMIN),
)
async def reload_policy(request: Request) -> dict[str, Any]:
    runtime = runtime_of(request)
    runtime.reload_policy()
    policy = runtime.policy.policy
    return {
        "path": str(runtime.policy.path) if runtime.policy.path else None,
        "plan_rules": [r.id for r in policy.plan_rules],
        "call_rules": [r.id for r in policy.call_rules],
    }
