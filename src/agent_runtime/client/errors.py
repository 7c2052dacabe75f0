"""What the client raises: the service's answers as exceptions carrying its error code.

Every failed request answers ``{"error": {"code", "message", "details"}}``; :class:`APIError` keeps all
three and the HTTP status. The subclasses say whose fault it is at a glance (the request was wrong, the
task is not where the request assumed, the service failed), without parsing codes.
"""

from __future__ import annotations

from typing import Any


class ClientError(Exception):
    """Base of everything :mod:`agent_runtime.client` raises on purpose."""


class ConnectionFailed(ClientError):
    """The service could not be reached, or the connection failed and could not be re-established."""

    def __init__(self, server: str, reason: str) -> None:
        super().__init__(f"cannot reach {server}: {reason}")
        self.server = server
        self.reason = reason


class APIError(ClientError):
    """The service answered with an error. ``code`` is its stable error code (``not_found``, …)."""

    def __init__(self, status: int, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details: dict[str, Any] = details or {}


class InvalidRequest(APIError):
    """400, 413 or 422: the request itself was wrong (``details`` name the fields)."""


class Unauthorized(APIError):
    """401 or 403: no credentials, bad credentials, or not allowed to do this."""


class NotFound(APIError):
    """404: no such task (or not one the caller may see)."""


class Conflict(APIError):
    """409: the task is not in the state the request assumed (``invalid_state``, ``stale_plan_version``)."""


class ServerError(APIError):
    """5xx: the service (or something it depends on) failed."""


def error_from(status: int, body: Any) -> APIError:
    """The exception for an error answer; a body that is not the service's error shape still gives one."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and isinstance(error.get("code"), str):
        code, message = error["code"], str(error.get("message", ""))
        details = error.get("details") if isinstance(error.get("details"), dict) else {}
    else:
        code, message, details = f"http_{status}", f"HTTP {status}", {}
    return _CLASS.get(status, ServerError if status >= 500 else APIError)(status, code, message, details)


_CLASS: dict[int, type[APIError]] = {
    400: InvalidRequest,
    413: InvalidRequest,
    422: InvalidRequest,
    401: Unauthorized,
    403: Unauthorized,
    404: NotFound,
    409: Conflict,
}
