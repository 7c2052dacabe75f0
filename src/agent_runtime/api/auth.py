"""Authentication and route-level authorization: the one place every request goes through.

Every route is a :class:`GuardedRoute` and names the :class:`Permission` it needs with
``openapi_extra=access(...)``; a route that names none cannot be built (the app fails at import),
so no route ships unprotected by accident. Before the handler runs (and before its body is read)
the guard:

1. authenticates the ``Authorization: Bearer`` header into a :class:`Principal` (API key or OIDC
   token; see ``services/authn.py``), else 401 ``unauthenticated``;
2. on a mutating route, refuses a body that is not ``application/json`` (415);
3. checks the route's permission against the principal's roles, else 403 ``forbidden``;
4. hands the principal to the handler on ``request.state.principal``.

Which *task* a principal may touch (its tenant; a submitter's own tasks) is decided in the
service layer, which answers 404 for a task the principal may not see.

The same permission is written into the OpenAPI document (``x-required-permission``, and the
``security`` requirement Swagger's "Authorize" uses).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from agent_runtime.domain.identity import Permission, Principal, unauthenticated
from agent_runtime.errors import AuthenticationError, ForbiddenError, UnsupportedMediaTypeError
from agent_runtime.services.authn import Authenticator

ACCESS_KEY = "x-required-permission"
SCHEME = "bearerAuth"
MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def access(permission: Permission) -> dict[str, Any]:
    """``openapi_extra`` for a route that needs ``permission``."""
    if permission is Permission.PUBLIC:
        security: list[dict[str, list[str]]] = []
    elif permission is Permission.METRICS:
        security = [{}, {SCHEME: []}]  # open unless auth.metrics_token is set
    else:
        security = [{SCHEME: []}]
    return {ACCESS_KEY: permission.value, "security": security}


def permission_of(route: APIRoute) -> Permission:
    value = (route.openapi_extra or {}).get(ACCESS_KEY)
    if value is None:
        raise RuntimeError(
            f"route {sorted(route.methods or [])} {route.path} declares no permission: "
            "add openapi_extra=access(Permission.…)"
        )
    return Permission(value)


def authenticator_of(request: Request) -> Authenticator:
    auth: Authenticator = request.app.state.auth
    return auth


def principal_of(request: Request) -> Principal:
    principal: Principal = request.state.principal
    return principal


def acting(request: Request, actor: str | None) -> Principal:
    """The principal a command acts as. With authentication on, the body's ``actor`` may only
    repeat the authenticated subject (else 403, field ``actor``); the subject is recorded either
    way. With authentication disabled, the name given in ``actor`` is recorded as it is."""
    principal = principal_of(request)
    if not principal.authenticated:
        return unauthenticated(actor) if actor else principal
    if actor is not None and actor != principal.subject:
        raise ForbiddenError(
            f"actor {actor!r} is not the authenticated subject; omit actor (the subject "
            f"{principal.subject!r} is recorded)",
            details={"field": "actor"},
        )
    return principal


def _require_json(request: Request) -> None:
    content_type = request.headers.get("content-type")
    if content_type is None:
        if request.headers.get("content-length", "0") not in ("", "0") or "transfer-encoding" in request.headers:
            raise UnsupportedMediaTypeError(
                "a request body must be sent as application/json", details={"field": "content-type"}
            )
        return
    media = content_type.split(";", 1)[0].strip().lower()
    if media != "application/json" and not (media.startswith("application/") and media.endswith("+json")):
        raise UnsupportedMediaTypeError(
            f"content-type {media!r} is not accepted; send application/json", details={"field": "content-type"}
        )


class GuardedRoute(APIRoute):
    """An API route whose handler runs only for a principal allowed by the route's permission."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        permission = permission_of(self)
        mutating = bool((self.methods or set()) & MUTATING)
        if permission is Permission.PUBLIC:
            return handler
        if permission is Permission.METRICS:

            async def metrics_guard(request: Request) -> Response:
                if not authenticator_of(request).metrics_allowed(request.headers.get("authorization")):
                    raise AuthenticationError("GET /metrics needs 'Authorization: Bearer <auth.metrics_token>'")
                return await handler(request)

            return metrics_guard

        async def guarded(request: Request) -> Response:
            principal = await authenticator_of(request).authenticate(request.headers.get("authorization"))
            if mutating:
                _require_json(request)
            if not principal.may(permission):
                raise ForbiddenError(
                    f"this needs the {permission.value!r} permission; roles "
                    f"{', '.join(principal.sorted_roles) or '(none)'} do not grant it",
                    details={"required": permission.value, "roles": principal.sorted_roles},
                )
            request.state.principal = principal
            return await handler(request)

        return guarded
