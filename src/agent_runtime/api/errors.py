"""One JSON error shape for every failure: ``{"error": {"code", "message", "details"}}``."""

from __future__ import annotations

from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Route

from agent_runtime.errors import ErrorCode, ServiceError

log = structlog.get_logger(__name__)

STATUS: dict[ErrorCode, int] = {
    ErrorCode.VALIDATION_ERROR: 422,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.INVALID_STATE: 409,
    ErrorCode.STALE_PLAN_VERSION: 409,
    ErrorCode.LEASE_LOST: 409,
    ErrorCode.UNAUTHENTICATED: 401,
    ErrorCode.FORBIDDEN: 403,
    ErrorCode.SELF_APPROVAL_FORBIDDEN: 403,
    ErrorCode.CONTENT_HASH_MISMATCH: 409,
    ErrorCode.UNSUPPORTED_MEDIA_TYPE: 415,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.CONFIG_ERROR: 422,  # only reachable through the API by reloading a bad registry file
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.LLM_ERROR: 502,
    ErrorCode.LLM_RATE_LIMITED: 502,
    ErrorCode.LLM_TIMEOUT: 504,
    ErrorCode.LLM_AUTH: 502,
    ErrorCode.TOOL_ERROR: 502,
    ErrorCode.TOOL_TIMEOUT: 504,
    ErrorCode.TOOL_SERVER_UNAVAILABLE: 502,
}


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


def _field(loc: tuple[Any, ...]) -> str:
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "header")]
    return ".".join(parts) or ".".join(str(p) for p in loc)


async def _service_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ServiceError)
    status = STATUS.get(exc.code, 500)
    if status >= 500:
        log.error("request_failed", code=exc.code.value, error=exc.message)
    headers = {"WWW-Authenticate": 'Bearer realm="agent-runtime"'} if status == 401 else None
    return JSONResponse(error_body(exc.code.value, exc.message, exc.details), status_code=status, headers=headers)


async def _validation_error(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    fields = [
        {
            "field": "body" if e["type"] == "json_invalid" else _field(tuple(e["loc"])),
            "message": e["msg"],
            "type": e["type"],
        }
        for e in exc.errors()
    ]
    message = "; ".join(f"{f['field']}: {f['message']}" for f in fields) or "invalid request"
    return JSONResponse(error_body(ErrorCode.VALIDATION_ERROR.value, message, {"fields": fields}), status_code=422)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(exc.status_code, "http_error")
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = ", ".join(_allowed(request))
    return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code, headers=headers or None)


def _allowed(request: Request) -> list[str]:
    """Every method some route serves at this path (a path's methods are spread over several routes,
    and Starlette's own ``Allow`` names only the first route's)."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods and route.path_regex.match(request.url.path):
            methods |= route.methods
    return sorted(methods)


async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
    log.exception("unhandled_error", exc_info=exc)
    return JSONResponse(error_body(ErrorCode.INTERNAL.value, "internal error"), status_code=500)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ServiceError, _service_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
