"""The published OpenAPI document, made exact: every status a route can answer, with the one error
shape the service really sends, and the real media types of the stream and the metrics.

FastAPI documents only a route's success status and a 422 with its own ``HTTPValidationError``
schema, which the service never sends (``api/errors.py`` answers ``{"error": {code, message,
details}}``). This module post-processes the generated document once, from rules that follow the
route table: a path with ``{task_id}`` can answer 404; a command on a task can answer 409; a route
with a body can answer 413; every route with input can answer 422. A contract test
(``tests/api/test_contract.py``, schemathesis with all checks) holds the document to the responses.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

from agent_runtime.domain.events import TASK_EVENT
from agent_runtime.domain.inputs import NON_BLANK
from agent_runtime.domain.plan import STEP_ID

ERROR_SCHEMA: dict[str, Any] = {
    "title": "Error",
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "details"],
            "properties": {
                "code": {"type": "string", "description": "Stable machine-readable code, e.g. not_found."},
                "message": {"type": "string"},
                "details": {"type": "object", "additionalProperties": True},
            },
        }
    },
}
ERROR_REF = {"$ref": "#/components/schemas/Error"}

EVENT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["task_id", "seq", "type", "data", "created_at"],
    "properties": {
        "task_id": {"type": "string"},
        "seq": {"type": "integer", "description": "The SSE id: gap-free per task, from 1"},
        "type": {"type": "string", "description": "The SSE event name (README, event catalogue)"},
        "data": {"type": "object"},
        "created_at": {"type": "string", "format": "date-time"},
    },
}
"""The ``data`` of each SSE frame of a task's stream."""

DESCRIPTIONS = {
    "401": "No valid bearer token (an API key or an OIDC token)",
    "403": "The caller's roles do not allow this (or self-approval, or an actor that is not the caller)",
    "415": "Mutating routes take application/json only",
    "404": "No such task (or resource)",
    "409": "Not allowed in the task's current state (details.current_status) or a stale plan version",
    "413": "The request body, or one of its fields, is over a documented limit",
    "422": "Invalid input; details.fields names each field",
    "503": "Not ready",
}

EXTRA: dict[tuple[str, str], dict[str, str]] = {
    ("post", "/v1/tasks/{task_id}/approve"): {
        "200": "A repeat of the same approval: nothing changed",
        "202": "Approved: execution starts",
    },
    ("get", "/readyz"): {"503": DESCRIPTIONS["503"]},
    ("get", "/metrics"): {"404": "Metrics are disabled"},
    ("post", "/v1/admin/reload-tools"): {"422": "The registry file is invalid (code config_error); the old one stays"},
    ("post", "/v1/admin/reload-policy"): {"422": "The policy file is invalid (code config_error); the old one stays"},
    ("post", "/v1/admin/reload-profiles"): {
        "422": "The profiles file is invalid (code config_error); the old profiles stay"
    },
    ("get", "/v1/sessions/{session_id}"): {"404": "The caller sees no task of this session"},
    ("post", "/v1/webhooks/deliveries/{delivery_id}/retry"): {
        "404": "No such delivery in the caller's tenant",
        "409": "The delivery is still pending (details.status)",
    },
}
"""Statuses a rule cannot see from the route's shape."""


def install(app: FastAPI) -> None:
    """Wrap ``app.openapi`` (FastAPI's, plus what other modules added) so the document it returns is
    made exact, once, on first request."""
    generate = app.openapi
    exact_doc: dict[str, Any] | None = None

    def openapi() -> dict[str, Any]:
        nonlocal exact_doc
        if exact_doc is None:
            exact_doc = exact(generate())
            app.openapi_schema = exact_doc
        return exact_doc

    app.openapi = openapi  # type: ignore[method-assign]


def exact(doc: dict[str, Any]) -> dict[str, Any]:
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Error"] = ERROR_SCHEMA
    for path, item in doc.get("paths", {}).items():
        for method, op in item.items():
            _no_null_parameters(op)
            responses: dict[str, Any] = op.setdefault("responses", {})
            has_input = bool(op.get("parameters")) or "requestBody" in op
            statuses: dict[str, str] = {}
            security = op.get("security")
            if security and {} not in security:  # a bearer token is required
                statuses["401"] = DESCRIPTIONS["401"]
                statuses["403"] = DESCRIPTIONS["403"]
            if "requestBody" in op or (security and method in ("post", "put", "patch", "delete")):
                statuses["415"] = DESCRIPTIONS["415"]
            if has_input:
                statuses["422"] = DESCRIPTIONS["422"]
            if "{task_id}" in path:
                statuses["404"] = DESCRIPTIONS["404"]
                if method in ("post", "put", "patch", "delete"):
                    statuses["409"] = DESCRIPTIONS["409"]
            if "requestBody" in op:
                statuses["413"] = DESCRIPTIONS["413"]
            statuses.update(EXTRA.get((method, path), {}))
            for status, description in statuses.items():
                if status.startswith("2"):
                    success = next((r for s, r in responses.items() if s.startswith("2")), None)
                    responses[status] = {**(success or {}), "description": description}
                else:
                    responses[status] = {
                        "description": description,
                        "content": {"application/json": {"schema": ERROR_REF}},
                    }
    _media(doc, "get", "/metrics", "text/plain", {"type": "string"}, "Prometheus text exposition format")
    event_schema, records = event_stream_schema()
    for name, record in records.items():  # the records' own names and their nested models (Plan, …)
        schemas.setdefault(name, record)
    frame = {
        "type": "object",
        "description": "One server-sent event: id (the sequence number), event (the type), data (JSON)",
        "required": ["id", "event", "data"],
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9]+$"},
            "event": {"type": "string"},
            "data": {
                "type": "string",
                "contentMediaType": "application/json",
                "contentSchema": event_schema,
            },
        },
    }
    _media(doc, "get", "/v1/tasks/{task_id}/stream", "text/event-stream", frame, "Server-sent events")
    _plan_rules(schemas)
    return doc


def _plan_rules(schemas: dict[str, Any]) -> None:
    """What ``domain.plan.check_plan`` requires that a schema can say (the rest needs the catalogue
    and the step graph: unknown tools, duplicate ids, dangling or cyclic ``depends_on``)."""
    steps = schemas.get("Plan", {}).get("properties", {}).get("steps")
    if steps is not None:
        steps["minItems"] = 1
    step = schemas.get("PlanStep", {}).get("properties", {})
    if step:
        step["id"]["pattern"] = STEP_ID.pattern
        step["instruction"]["pattern"] = NON_BLANK
        step["depends_on"]["items"]["pattern"] = STEP_ID.pattern


def _no_null_parameters(op: dict[str, Any]) -> None:
    """An optional parameter is absent, never ``null`` (HTTP has no null header or query value):
    ``anyOf: [X, null]`` becomes ``X``."""
    for param in op.get("parameters", []):
        schema = param.get("schema", {})
        options = schema.get("anyOf")
        if options and {"type": "null"} in options and len(options) == 2:
            [kept] = [o for o in options if o != {"type": "null"}]
            param["schema"] = {**{k: v for k, v in schema.items() if k != "anyOf"}, **kept}


def _media(doc: dict[str, Any], method: str, path: str, media: str, schema: dict[str, Any], text: str) -> None:
    op = doc.get("paths", {}).get(path, {}).get(method)
    if op is not None:
        op["responses"]["200"] = {"description": text, "content": {media: {"schema": schema}}}


def event_stream_schema() -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``data`` of a stream frame as the typed event union (``domain/events/``): one envelope
    per event type, its ``data`` that type's record without ``type``. Returns (schema, the records'
    component schemas)."""
    union = TASK_EVENT.json_schema(mode="validation", ref_template="#/components/schemas/{model}")
    components: dict[str, Any] = union.get("$defs", {})
    variants = []
    for ref in union["discriminator"]["mapping"].values():
        name = ref.rsplit("/", 1)[-1]
        record = components[name]
        type_value = record["properties"]["type"]["const"]
        data = {k: v for k, v in record.items() if k not in ("properties", "required")}
        data["properties"] = {k: v for k, v in record["properties"].items() if k != "type"}
        data["required"] = [k for k in record.get("required", []) if k != "type"]
        components[f"{name}Data"] = data
        variants.append(
            {
                "type": "object",
                "required": ["task_id", "seq", "type", "data", "created_at"],
                "properties": {
                    **EVENT_SCHEMA["properties"],
                    "type": {"const": type_value},
                    "data": {"$ref": f"#/components/schemas/{name}Data"},
                },
            }
        )
    return {"oneOf": variants}, components
