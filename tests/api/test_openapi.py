"""The OpenAPI document and /docs describe every route, with its tags and response model."""

from __future__ import annotations

from pathlib import Path

from agent_runtime.domain.events import EventType
from tests.support.harness import live_service, make_settings

ROUTES = {
    ("post", "/v1/tasks"): ("tasks", "TaskOut"),
    ("get", "/v1/tasks"): ("tasks", "TaskPage"),
    ("get", "/v1/tasks/{task_id}"): ("tasks", "TaskOut"),
    ("get", "/v1/tasks/{task_id}/plan/versions"): ("tasks", "PlanVersionOut"),
    ("post", "/v1/tasks/{task_id}/approve"): ("tasks", "TaskOut"),
    ("post", "/v1/tasks/{task_id}/reject"): ("tasks", "TaskOut"),
    ("post", "/v1/tasks/{task_id}/revise"): ("tasks", "TaskOut"),
    ("put", "/v1/tasks/{task_id}/plan"): ("tasks", "TaskOut"),
    ("post", "/v1/tasks/{task_id}/cancel"): ("tasks", "TaskOut"),
    ("post", "/v1/tasks/{task_id}/resolve"): ("tasks", "TaskOut"),
    ("post", "/v1/tasks/{task_id}/calls/{call_id}/decision"): ("tasks", "TaskOut"),
    ("post", "/v1/tasks/{task_id}/budget"): ("tasks", "TaskOut"),
    ("get", "/v1/tasks/{task_id}/artifacts"): ("artifacts", "ArtifactList"),
    ("get", "/v1/tasks/{task_id}/artifacts/{name}"): ("artifacts", None),
    ("post", "/v1/tasks/{task_id}/retry"): ("tasks", "TaskOut"),
    ("get", "/v1/tasks/{task_id}/stream"): ("stream", None),
    ("get", "/healthz"): ("operations", None),
    ("get", "/readyz"): ("operations", None),
    ("get", "/metrics"): ("operations", None),
    ("get", "/v1/tools"): ("operations", None),
    ("post", "/v1/admin/reload-tools"): ("operations", None),
    ("post", "/v1/admin/reload-policy"): ("operations", None),
    ("post", "/v1/admin/reload-profiles"): ("operations", None),
    ("get", "/v1/sessions/{session_id}"): ("sessions", "SessionPage"),
    ("get", "/v1/tasks/{task_id}/approvals"): ("approvals", "ApprovalOut"),
    ("get", "/v1/approvals"): ("approvals", "InboxPage"),
    ("get", "/v1/webhooks/deliveries"): ("webhooks", "DeliveryPage"),
    ("post", "/v1/webhooks/deliveries/{delivery_id}/retry"): ("webhooks", "DeliveryOut"),
}
OPEN = {("get", "/healthz"), ("get", "/readyz")}


async def test_openapi_lists_every_route_with_its_tag_and_response_model(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        docs = await live.client.get("/docs")
        assert docs.status_code == 200 and "swagger-ui" in docs.text
        spec = (await live.client.get("/openapi.json")).json()
    found = {(method, path) for path, ops in spec["paths"].items() for method in ops}
    assert found == set(ROUTES)
    for (method, path), (tag, model) in ROUTES.items():
        op = spec["paths"][path][method]
        assert op["tags"] == [tag], (method, path)
        if model is not None:
            assert f"#/components/schemas/{model}" in str(op["responses"]), (method, path)
    stream = spec["paths"]["/v1/tasks/{task_id}/stream"]["get"]
    assert {p["name"] for p in stream["parameters"]} == {"task_id", "after", "Last-Event-ID"}
    assert spec["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": spec["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    for method, path in ROUTES:  # Swagger's "Authorize" sends the bearer header on every protected route
        security = spec["paths"][path][method]["security"]
        assert security == (
            [] if (method, path) in OPEN else [{}, {"bearerAuth": []}] if path == "/metrics" else [{"bearerAuth": []}]
        ), (method, path)
    approve = spec["paths"]["/v1/tasks/{task_id}/approve"]["post"]
    assert approve["requestBody"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Approve"}


async def test_a_known_path_with_another_method_is_405_in_the_error_shape(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        response = await live.client.delete("/v1/tasks")
    assert response.status_code == 405
    assert response.json()["error"]["code"] == "method_not_allowed"
    assert response.headers["allow"] == "GET, POST"  # every method some route serves at this path


async def test_the_stream_is_documented_as_server_sent_events_of_the_typed_event_union(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        doc = (await live.client.get("/openapi.json")).json()
    frame = doc["paths"]["/v1/tasks/{task_id}/stream"]["get"]["responses"]["200"]["content"]["text/event-stream"]
    data = frame["schema"]["properties"]["data"]
    assert data["contentMediaType"] == "application/json"
    variants = data["contentSchema"]["oneOf"]
    assert sorted(v["properties"]["type"]["const"] for v in variants) == sorted(t.value for t in EventType)
    for variant in variants:
        ref = variant["properties"]["data"]["$ref"].rsplit("/", 1)[-1]
        assert "type" not in doc["components"]["schemas"][ref]["properties"]  # data is the payload alone
    assert doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"].keys() == {"text/plain"}
