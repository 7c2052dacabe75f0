"""Who is asking, and what each role may do. Pure data and rules: no I/O, no web framework.

The API layer authenticates a request (API key or OIDC token) into a :class:`Principal` and hands
it to the services; the services decide with the rules below. A principal may hold several roles;
its permissions are the union of theirs.

* ``viewer``: read every task of its tenant (plans, events, approval trail), the tool catalogue;
* ``submitter``: submit tasks; read and cancel **its own** tasks;
* ``approver``: read every task of its tenant; approve, reject, revise, edit plans, resolve
  in-doubt calls, cancel; its approval inbox;
* ``admin``: all of the above for every task of its tenant, plus tool registry reloads.

Tenants never mix: a task belongs to its submitter's tenant, and a principal sees nothing of
another tenant (such a task answers as if it did not exist).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    VIEWER = "viewer"
    SUBMITTER = "submitter"
    APPROVER = "approver"
    ADMIN = "admin"


class Permission(StrEnum):
    """What a route needs. The route table names one per route (``api/auth.py``)."""

    PUBLIC = "public"
    """No credentials needed (liveness, readiness, the OpenAPI document and its UI)."""
    METRICS = "metrics"
    """``auth.metrics_token`` when it is set, else nothing (Prometheus scrapes)."""
    READ = "read"
    """Read tasks (those the principal may see), the tool catalogue."""
    SUBMIT = "submit"
    CANCEL = "cancel"
    DECIDE = "decide"
    """Approve, reject, revise, edit a plan, resolve an in-doubt call; the approval inbox."""
    ADMIN = "admin"
    """API keys of the tenant, tool registry reload."""


GRANTS: dict[Role, frozenset[Permission]] = {
    Role.VIEWER: frozenset({Permission.READ}),
    Role.SUBMITTER: frozenset({Permission.READ, Permission.SUBMIT, Permission.CANCEL}),
    Role.APPROVER: frozenset({Permission.READ, Permission.DECIDE, Permission.CANCEL}),
    Role.ADMIN: frozenset({Permission.READ, Permission.SUBMIT, Permission.CANCEL, Permission.DECIDE, Permission.ADMIN}),
}

SEES_WHOLE_TENANT = frozenset({Role.VIEWER, Role.APPROVER, Role.ADMIN})
"""Roles that see every task of their tenant; a principal with none of them sees its own tasks only."""

DEFAULT_TENANT = "default"


def parse_roles(values: list[str] | tuple[str, ...] | frozenset[str]) -> frozenset[Role]:
    """Role names to roles; unknown names raise ``ValueError`` naming them."""
    unknown = sorted(v for v in values if v not in Role.__members__.values())
    if unknown:
        raise ValueError(f"unknown role(s) {', '.join(unknown)}; roles are {', '.join(r.value for r in Role)}")
    return frozenset(Role(v) for v in values)


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller: its subject (a user or service name), tenant and roles."""

    subject: str
    tenant: str
    roles: frozenset[Role]
    authenticated: bool = True
    """False only when ``auth.mode: disabled``: nobody was identified, so identity rules that
    compare people (self-approval, four-eyes) cannot hold and are not applied."""
    via: str = "key"
    """How it was authenticated: ``key``, ``oidc``, or ``none`` (authentication disabled)."""
    credential_id: str | None = None
    """The API key's id (never the key), or None."""

    @property
    def permissions(self) -> frozenset[Permission]:
        out: set[Permission] = {Permission.PUBLIC}
        for role in self.roles:
            out |= GRANTS[role]
        return frozenset(out)

    def may(self, permission: Permission) -> bool:
        return permission in self.permissions

    def sees(self, tenant: str, submitted_by: str | None) -> bool:
        """Whether this principal may see a task of ``tenant`` submitted by ``submitted_by``."""
        if tenant != self.tenant:
            return False
        return bool(self.roles & SEES_WHOLE_TENANT) or submitted_by == self.subject

    def may_cancel(self, submitted_by: str | None) -> bool:
        """Cancel (of a task it sees): approvers and admins any, submitters their own."""
        if self.roles & {Role.APPROVER, Role.ADMIN}:
            return True
        return Role.SUBMITTER in self.roles and submitted_by == self.subject

    @property
    def sorted_roles(self) -> list[str]:
        return sorted(r.value for r in self.roles)


def unauthenticated(actor: str | None = None) -> Principal:
    """The principal of every request when authentication is disabled (and of trusted in-process
    callers such as benchmarks): every role, the default tenant, no verified identity. ``actor``
    is the name the caller gave, recorded as it is."""
    return Principal(
        subject=actor or "anonymous",
        tenant=DEFAULT_TENANT,
        roles=frozenset(Role),
        authenticated=False,
        via="none",
    )
