"""The authorization matrix, generated from the app's route table.

Every route × method is called as every role (none, viewer, submitter, approver, admin) from the
task's tenant and from another tenant, on a task the caller submitted and on someone else's.
``MATRIX`` holds the expected status of every cell; a second test fails when the app has a route
the table does not list, so a new route cannot ship without a decided access rule.

Callers are always the subject ``carol``: in tenant ``acme`` (the tasks' tenant) or ``globex``.
"Own" tasks were submitted by carol@acme, "other" tasks by dave@acme. A cell of a mutating route
that is expected to succeed gets a fresh task, so no cell sees another cell's effect; cells expected
to be refused (401, 403, 404, 409) change nothing and share two tasks waiting for approval.

Cell codes: a status, or ``403s`` (403 ``self_approval_forbidden``), ``404c`` (404 naming the
tool call: the caller may see the task, which has no such call), ``404a`` (404 naming the artifact:
the caller may see the task, which kept no such file), ``404t`` (404 naming the task: the
caller may not see it; the same answer as for a task that does not exist). A resolve on a visible
task that needs no attention is a 409 (the state is checked before the call id). ``404d``: 404 naming a
webhook delivery (this world has none, so an admin's retry finds nothing; tests/webhooks has the rest).
``404s``: 404 naming the session: the caller sees none of its tasks (each owner has one session).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi.routing import APIRoute
from starlette.routing import Route

from agent_runtime.app import create_app
from tests.support.harness import Live, live_service
from tests.support.identity import auth_settings, bearer, make_key, submit_as

ROLES = ("none", "viewer", "submitter", "approver", "admin")
TENANT = "acme"
OTHER_TENANT = "globex"

# For every role, four cells: (caller's tenant, task owner) =
#   (acme, own) (acme, other's) (globex, own subject name) (globex, other's)
# fmt: off
MATRIX: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/healthz"):                         {r: "200 200 200 200" for r in ROLES},
    ("GET", "/readyz"):                          {r: "200 200 200 200" for r in ROLES},
    ("GET", "/metrics"):                         {r: "200 200 200 200" for r in ROLES},
    ("GET", "/docs"):                            {r: "200 200 200 200" for r in ROLES},
    ("GET", "/docs/oauth2-redirect"):            {r: "200 200 200 200" for r in ROLES},
    ("GET", "/redoc"):                           {r: "200 200 200 200" for r in ROLES},
    ("GET", "/openapi.json"):                    {r: "200 200 200 200" for r in ROLES},
    ("GET", "/"):                                {r: "200 200 200 200" for r in ROLES},
    ("GET", "/console"):                         {r: "307 307 307 307" for r in ROLES},
    ("GET", "/console/"):                        {r: "200 200 200 200" for r in ROLES},
    ("GET", "/console/config.json"):             {r: "200 200 200 200" for r in ROLES},
    ("GET", "/v1/tools"):
        {"none": "401 401 401 401", "viewer": "200 200 200 200", "submitter": "200 200 200 200",
         "approver": "200 200 200 200", "admin": "200 200 200 200"},
    ("POST", "/v1/admin/reload-tools"):
        {"none": "401 401 401 401", "viewer": "403 403 403 403", "submitter": "403 403 403 403",
         "approver": "403 403 403 403", "admin": "200 200 200 200"},
    ("POST", "/v1/tasks"):
        {"none": "401 401 401 401", "viewer": "403 403 403 403", "submitter": "202 202 202 202",
         "approver": "403 403 403 403", "admin": "202 202 202 202"},
    ("GET", "/v1/tasks"):
        {"none": "401 401 401 401", "viewer": "200 200 200 200", "submitter": "200 200 200 200",
         "approver": "200 200 200 200", "admin": "200 200 200 200"},
    ("GET", "/v1/approvals"):
        {"none": "401 401 401 401", "viewer": "403 403 403 403", "submitter": "403 403 403 403",
         "approver": "200 200 200 200", "admin": "200 200 200 200"},
    ("GET", "/v1/tasks/{task_id}"):
        {"none": "401 401 401 401", "viewer": "200 200 404t 404t", "submitter": "200 404t 404t 404t",
         "approver": "200 200 404t 404t", "admin": "200 200 404t 404t"},
    ("GET", "/v1/tasks/{task_id}/plan/versions"):
        {"none": "401 401 401 401", "viewer": "200 200 404t 404t", "submitter": "200 404t 404t 404t",
         "approver": "200 200 404t 404t", "admin": "200 200 404t 404t"},
    ("GET", "/v1/tasks/{task_id}/artifacts"):
        {"none": "401 401 401 401", "viewer": "200 200 404t 404t", "submitter": "200 404t 404t 404t",
         "approver": "200 200 404t 404t", "admin": "200 200 404t 404t"},
    ("GET", "/v1/tasks/{task_id}/artifacts/{name}"):
        {"none": "401 401 401 401", "viewer": "404a 404a 404t 404t", "submitter": "404a 404t 404t 404t",
         "approver": "404a 404a 404t 404t", "admin": "404a 404a 404t 404t"},
    ("GET", "/v1/tasks/{task_id}/stream"):
        {"none": "401 401 401 401", "viewer": "200 200 404t 404t", "submitter": "200 404t 404t 404t",
         "approver": "200 200 404t 404t", "admin": "200 200 404t 404t"},
    ("GET", "/v1/tasks/{task_id}/approvals"):
        {"none": "401 401 401 401", "viewer": "200 200 404t 404t", "submitter": "200 404t 404t 404t",
         "approver": "200 200 404t 404t", "admin": "200 200 404t 404t"},
    ("POST", "/v1/tasks/{task_id}/approve"):
        {"none": "401 401 401 401", "viewer": "403 403 403 403", "submitter": "403 403 403 403",
         "approver": "403s 202 404t 404t", "admin": "403s 202 404t 404t"},
    ("POST", "/v1/tasks/{task_id}/reject"):
        {"none": "401 401 401 401", "viewer": "403 403 403 403", "submitter": "403 403 403 403",
         "approver": "200 200 404t 404t", "admin": "200 200 404t 404t"},
    ("POST", "/v1/tasks/{task_id}/revise"):
        {"none": "401 401 401 401", "viewer": "403 403 403 403", "submitter": "403 403 403 403",
         "approver": "202 202 404t 404t", "admin": "202 202 404t 404t"},
    ("PUT", "/v1/tasks/{task_id}/plan"):
        {"none": "401 401 401 401", "viewer": "403 403 403 403", "submitter": "403 403 403 403",
         "approver": "200 200 404t 404t", "admin": "200 200 404t 404t"},
    ("POST", "/v1/tasks/{task_id}/cancel"):
        {"none": "401 401 401 401", "viewer": "403 403 403 403", "submitter": "200 404t 404t 404t",
         "approver": "200 200 404t 404t", "admin": "200 200 404t 404t"},
    ("POST", "/v1/tasks/{task_id}/resolve"):
        {"none": "401 401 401 401", "viewer": "403 403 403 403", "submitter": "403 403 403 403",
         "approver": "409 409 404t 404t", "admin": "409 409 404t 404t"},
    ("POST", "/v1/tasks/{task_id}/calls/{call_id}/decision"):
        {"none": "401 401 401 401", "viewer": "403 403 403 403", "submitter": "403 403 403 403",
         "approver": "409 409 404t 404t", "admin": "409 409 404t 404t"},
    ("POST", "/v1/tasks/{task_id}/budget"):
        {"none": "401 401 401 401", "viewer": "403 403 403 403", "submitter": "403 403 403 403",
         "approver": "409 409 404t 404t", "admin": "409 409 404t 404t"},
    ("POST", "/v1/tasks/{task_id}/retry"):
        {"none": "401 401 401 401", "viewer": "403 403 403 403", "submitter": "403 403 403 403",
         "approver": "409 409 404t 404t", "admin": "409 409 404t 404t"},
    ("POST", "/v1/admin/reload-policy"):
        {"none": "401 401 401 401", "viewer": "403 403 403 403", "submitter": "403 403 403 403",
         "approver": "403 403 403 403", "admin": "200 200 200 200"},
    ("POST", "/v1/admin/reload-profiles"):
        {"none": "401 401 401 401", "viewer": "403 403 403 403", "submitter": "403 403 403 403",
         "approver": "403 403 403 403", "admin": "200 200 200 200"},
    ("GET", "/v1/sessions/{session_id}"):
        {"none": "401 401 401 401", "viewer": "200 200 404s 404s", "submitter": "200 404s 404s 404s",
         "approver": "200 200 404s 404s", "admin": "200 200 404s 404s"},
    ("GET", "/v1/webhooks/deliveries"):
        {"none": "401 401 401 401", "viewer": "403 403 403 403", "submitter": "403 403 403 403",
         "approver": "403 403 403 403", "admin": "200 200 200 200"},
    ("POST", "/v1/webhooks/deliveries/{delivery_id}/retry"):
        {"none": "401 401 401 401", "viewer": "403 403 403 403", "submitter": "403 403 403 403",
         "approver": "403 403 403 403", "admin": "404d 404d 404d 404d"},
}
# fmt: on

BODIES: dict[tuple[str, str], dict[str, Any] | None] = {
    ("POST", "/v1/admin/reload-tools"): None,
    ("POST", "/v1/tasks"): {"prompt": "Echo hello."},
    ("POST", "/v1/tasks/{task_id}/approve"): {"plan_version": 1},
    ("POST", "/v1/tasks/{task_id}/reject"): {"reason": "no"},
    ("POST", "/v1/tasks/{task_id}/revise"): {"feedback": "shorter"},
    ("PUT", "/v1/tasks/{task_id}/plan"): {
        "base_version": 1,
        "plan": {
            "summary": "edited",
            "steps": [
                {"id": "s1", "title": "echo", "instruction": "Echo hi", "tools": ["example.echo"], "depends_on": []}
            ],
        },
    },
    ("POST", "/v1/tasks/{task_id}/cancel"): {"reason": "stop"},
    ("POST", "/v1/tasks/{task_id}/resolve"): {"tool_call_id": "call_none", "action": "retry"},
    ("POST", "/v1/tasks/{task_id}/calls/{call_id}/decision"): {"decision": "approve"},
    ("POST", "/v1/tasks/{task_id}/budget"): {"tool_calls": 10},
    ("POST", "/v1/tasks/{task_id}/retry"): None,
    ("POST", "/v1/admin/reload-policy"): None,
    ("POST", "/v1/admin/reload-profiles"): None,
    ("POST", "/v1/webhooks/deliveries/{delivery_id}/retry"): None,
}
NO_CALL = "call_" + "0" * 24
CELLS = [(TENANT, "own"), (TENANT, "other"), (OTHER_TENANT, "own"), (OTHER_TENANT, "other")]


def route_table(tmp: Path) -> set[tuple[str, str]]:
    """Every (method, path) the app serves, from its route table (HEAD aside)."""
    app = create_app(auth_settings(tmp))
    found = set()
    for route in app.routes:
        if isinstance(route, APIRoute | Route):
            for method in route.methods or ():
                if method != "HEAD":
                    found.add((method, route.path))
    return found


def test_every_route_of_the_app_is_in_the_authorization_matrix(tmp_path: Path) -> None:
    routes = route_table(tmp_path)
    assert routes - set(MATRIX) == set(), "routes without a row in MATRIX: decide who may call them"
    assert set(MATRIX) - routes == set(), "MATRIX rows for routes that no longer exist"


@dataclass
class World:
    live: Live
    keys: dict[tuple[str, str], str]
    """(role, tenant) -> carol's key."""
    owner: str
    """carol@acme's submitter key."""
    other: str
    """dave@acme's submitter key."""


@asynccontextmanager
async def world_in(tmp_path: Path) -> AsyncIterator[World]:
    """(Not a fixture: the service's task group must be entered and left in the test's own task.)"""
    async with live_service(auth_settings(tmp_path)) as live:
        keys = {
            (role, tenant): await make_key(live, "carol", tenant, role)
            for role in ROLES[1:]
            for tenant in (TENANT, OTHER_TENANT)
        }
        owner = await make_key(live, "carol", TENANT, "submitter")
        other = await make_key(live, "dave", TENANT, "submitter")
        yield World(live, keys, owner, other)


async def _call(client: httpx.AsyncClient, method: str, path: str, key: str | None, body: Any) -> httpx.Response:
    headers = bearer(key)
    if path.endswith("/stream"):
        async with client.stream(method, path, headers=headers) as response:
            if response.status_code != 200:
                await response.aread()
            return response
    if body is None:
        return await client.request(method, path, headers=headers)
    return await client.request(method, path, headers=headers, json=body)


def _observed(response: httpx.Response) -> str:
    status = str(response.status_code)
    if response.status_code in (403, 404):
        error = response.json()["error"]
        if error["code"] == "self_approval_forbidden":
            return "403s"
        if response.status_code == 404 and "delivery_id" in error["details"]:
            return "404d"
        if response.status_code == 404 and "session_id" in error["details"]:
            return "404s"
        if response.status_code == 404:
            field = error["details"].get("field")
            if field == "name":
                return "404a"
            return "404c" if field in ("tool_call_id", "call_id") else "404t"
    return status


async def test_every_route_answers_every_role_tenant_and_owner_as_the_matrix_says(tmp_path: Path) -> None:
    async with world_in(tmp_path) as world:
        wrong, calls = await _run_matrix(world)
    assert wrong == [], "\n".join(wrong)
    assert calls == len(MATRIX) * len(ROLES) * len(CELLS)


async def _run_matrix(world: World) -> tuple[list[str], int]:
    live = world.live
    shared = {
        "own": await submit_as(live, world.owner, "Echo shared own."),
        "other": await submit_as(live, world.other, "Echo shared other."),
    }
    for whose, submitter in (("own", world.owner), ("other", world.other)):  # one session each, one task in it
        body = {"prompt": "Echo in a session.", "session_id": f"matrix-{whose}"}
        assert (await live.client.post("/v1/tasks", json=body, headers=bearer(submitter))).status_code == 202
    wrong: list[str] = []
    calls = 0
    for (method, path), row in MATRIX.items():
        mutating = method != "GET"
        for role in ROLES:
            expected_cells = row[role].split()
            for (tenant, owner), expected in zip(CELLS, expected_cells, strict=True):
                key = None if role == "none" else world.keys[(role, tenant)]
                target = path
                if "{task_id}" in path:
                    if mutating and expected.startswith("2"):
                        # A cell that changes its task gets a fresh one, so no cell sees another's
                        # effect; a refused call changes nothing and uses the shared task.
                        submitter = world.owner if owner == "own" else world.other
                        task_id = await submit_as(live, submitter, f"Echo {role} {tenant} {owner}.")
                    else:
                        task_id = shared[owner]
                    target = path.replace("{task_id}", task_id).replace("{call_id}", NO_CALL)
                    target = target.replace("{name}", "report.md")
                target = target.replace("{delivery_id}", "1").replace("{session_id}", f"matrix-{owner}")
                response = await _call(live.client, method, target, key, BODIES.get((method, path)))
                calls += 1
                got = _observed(response)
                if got != expected:
                    wrong.append(f"{method} {path} as {role}@{tenant} on {owner} task: expected {expected}, got {got}")
    return wrong, calls
