"""Who may run a command on which task: the checks every command service shares."""

from __future__ import annotations

from agent_runtime.domain.identity import Permission, Principal, unauthenticated
from agent_runtime.domain.records import TaskRecord
from agent_runtime.errors import ForbiddenError, NotFoundError


def allowed(principal: Principal | None, permission: Permission) -> Principal:
    """The principal (``None``: a trusted in-process caller) if it holds ``permission``; else 403."""
    who = principal or unauthenticated()
    if not who.may(permission):
        raise ForbiddenError(f"this needs the {permission.value!r} permission", details={"required": permission.value})
    return who


def visible(task: TaskRecord, principal: Principal | None) -> TaskRecord:
    """``task`` if ``principal`` may see it; else the same 404 a missing task gets."""
    if principal is None or not principal.authenticated:
        return task
    if not principal.sees(task.tenant, task.submitted_by):
        raise NotFoundError(f"task {task.id} not found", details={"task_id": task.id})
    return task


def require_roles(who: Principal, roles: list[str], action: str) -> None:
    """A policy rule that names roles: ``who`` needs one of them (not applied without authentication,
    where nobody is identified)."""
    if roles and who.authenticated and not set(roles) & {r.value for r in who.roles}:
        raise ForbiddenError(f"only {', '.join(sorted(roles))} may {action}", details={"required_roles": sorted(roles)})
