"""Bad input gets a clear error naming the field; illegal transitions get 409 with the current state."""

from __future__ import annotations

from pathlib import Path

from tests.support.harness import live_service, make_settings


async def test_validation_errors_name_the_field_and_share_one_shape(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        missing = await live.client.post("/v1/tasks", json={"metadata": {}})
        assert missing.status_code == 422
        body = missing.json()["error"]
        assert body["code"] == "validation_error"
        assert body["details"]["fields"][0]["field"] == "prompt"
        assert "prompt" in body["message"]

        blank = await live.client.post("/v1/tasks", json={"prompt": "   "})
        assert blank.status_code == 422 and blank.json()["error"]["details"]["fields"][0]["field"] == "prompt"

        extra = await live.client.post("/v1/tasks", json={"prompt": "x", "colour": "red"})
        assert extra.status_code == 422 and extra.json()["error"]["details"]["fields"][0]["field"] == "colour"

        created = await live.submit("Echo a.")
        bad_version = await live.client.post(f"/v1/tasks/{created['id']}/approve", json={"plan_version": "one"})
        assert bad_version.status_code == 422
        assert bad_version.json()["error"]["details"]["fields"][0]["field"] == "plan_version"

        not_json = await live.client.post(
            "/v1/tasks", content=b'{"prompt": ', headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 422 and not_json.json()["error"]["details"]["fields"][0]["field"] == "body"

        bad_status = await live.client.get("/v1/tasks", params={"status": "sleeping"})
        assert bad_status.status_code == 422 and bad_status.json()["error"]["details"]["fields"][0]["field"] == "status"

        bad_resume = await live.client.get(f"/v1/tasks/{created['id']}/stream", headers={"Last-Event-ID": "abc"})
        assert bad_resume.status_code == 422
        assert bad_resume.json()["error"]["details"]["fields"][0]["field"] == "Last-Event-ID"


async def test_unknown_task_is_404_and_oversize_prompt_is_413(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path, limits={"max_prompt_chars": 100})) as live:
        unknown = "task_" + "0" * 24  # well-formed, never made
        for method, path in [
            ("GET", f"/v1/tasks/{unknown}"),
            ("GET", f"/v1/tasks/{unknown}/plan/versions"),
            ("GET", f"/v1/tasks/{unknown}/stream"),
            ("POST", f"/v1/tasks/{unknown}/cancel"),
        ]:
            response = await live.client.request(method, path)
            assert response.status_code == 404, path
            assert response.json()["error"]["code"] == "not_found"
        approve = await live.client.post(f"/v1/tasks/{unknown}/approve", json={"plan_version": 1})
        assert approve.status_code == 404
        malformed = await live.client.get("/v1/tasks/task_nope")
        assert malformed.status_code == 422
        assert malformed.json()["error"]["details"]["fields"][0]["field"] == "task_id"

        big = await live.client.post("/v1/tasks", json={"prompt": "x" * 101})
        assert big.status_code == 413
        assert big.json()["error"] == {
            "code": "payload_too_large",
            "message": "prompt has 101 characters; the limit is 100",
            "details": {"field": "prompt", "limit": 100},
        }
        assert (await live.client.get("/v1/tasks")).json()["items"] == []  # nothing half-written


async def test_illegal_transitions_return_409_with_the_current_state(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        created = await live.submit("Echo b.")
        task_id = created["id"]
        await live.wait_for(task_id, "approval_required")
        rejected = await live.client.post(f"/v1/tasks/{task_id}/reject", json={"reason": "not now", "actor": "ops"})
        assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"

        for path, body in [
            ("approve", {"plan_version": 1}),
            ("reject", {}),
            ("revise", {"feedback": "again"}),
            ("cancel", {}),
        ]:
            response = await live.client.post(f"/v1/tasks/{task_id}/{path}", json=body)
            assert response.status_code == 409, path
            error = response.json()["error"]
            assert error["code"] == "invalid_state"
            assert error["details"]["current_status"] == "rejected"
        stream = await live.wait_for(task_id, "task_rejected")
        assert stream[-1]["data"]["reason"] == "not now"


async def test_readiness_fails_while_migrations_are_pending(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, database={"auto_migrate": False})
    async with live_service(settings) as live:
        ready = await live.client.get("/readyz")
        assert ready.status_code == 503
        checks = ready.json()["checks"]
        assert checks == {
            "draining": False,
            "database": "ok",
            "migrations": "pending",
            # no tool_catalogue table yet: discovery works without it
            "tool_servers": {"ok": 1, "pending": 0, "failed": 0},
        }
        assert (await live.client.get("/healthz")).status_code == 200
