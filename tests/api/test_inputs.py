"""Every input gets a clear answer (issue 12): what a database cannot hold is refused at the edge
with a 422 naming the field, the same on SQLite and PostgreSQL, and nothing is half-written."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from httpx_sse import aconnect_sse

from tests.support.databases import database_url
from tests.support.harness import Live, live_service, make_settings, read_stream


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@asynccontextmanager
async def _service(backend: str, tmp: Path) -> AsyncIterator[Live]:
    async with (
        database_url(backend, tmp) as url,
        live_service(make_settings(tmp, database={"url": url, "auto_migrate": True})) as live,
    ):
        yield live


def _fields(body: dict[str, Any]) -> list[str]:
    return [f["field"] for f in body["error"]["details"]["fields"]]


async def _post_raw(live: Live, path: str, raw: bytes) -> tuple[int, dict[str, Any]]:
    response = await live.client.post(path, content=raw, headers={"content-type": "application/json"})
    return response.status_code, response.json()


def _nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


def _read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (it answers 413 with close)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


async def _declare(live: Live, method: str, path: str, length: int) -> bytes:
    """Send only a request's head declaring a ``length``-byte JSON body; return the whole answer."""
    host, port = live.url.removeprefix("http://").split(":")
    head = f"{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n"
    with socket.create_connection((host, int(port))) as sock:  # the body is never sent
        sock.settimeout(10)
        sock.sendall(head.encode())
        return await anyio.to_thread.run_sync(_read_until_closed, sock)


BAD_SUBMISSIONS = {
    "lone surrogate in a metadata value": (b'{"prompt":"x","metadata":{"k":"\\udfff"}}', "metadata"),
    "lone surrogate in a metadata key": (b'{"prompt":"x","metadata":{"\\udfff":"v"}}', "metadata"),
    "metadata nested 256 levels": (('{"prompt":"x","metadata":' + _nested(256) + "}").encode(), "metadata"),
    "NaN in metadata": (b'{"prompt":"x","metadata":{"k":NaN}}', "metadata"),
    "Infinity in metadata": (b'{"prompt":"x","metadata":{"k":[1,Infinity]}}', "metadata"),
    "NUL in the prompt": (b'{"prompt":"a\\u0000b"}', "prompt"),
    "lone surrogate in the prompt": (b'{"prompt":"\\ud800"}', "prompt"),
}


async def test_values_a_database_cannot_hold_are_refused_naming_the_field(tmp_path: Path, backend: str) -> None:
    async with _service(backend, tmp_path) as live:
        for case, (raw, field) in BAD_SUBMISSIONS.items():
            status, body = await _post_raw(live, "/v1/tasks", raw)
            assert status == 422, (case, body)
            assert body["error"]["code"] == "validation_error", case
            assert _fields(body) == [field], (case, body)
        assert (await live.client.get("/v1/tasks")).json()["items"] == []  # nothing was created
        metadata = {"deep": json.loads(_nested(30)), "n": 1.5, "s": "é", "nul\x00key": "a\x00b"}
        fine = await live.submit("x", metadata=metadata)
        assert (await live.task(fine["id"]))["metadata"] == metadata  # NUL in metadata is stored faithfully


async def test_ids_and_cursors_with_nul_or_garbage_get_the_same_422_on_both_backends(
    tmp_path: Path, backend: str
) -> None:
    async with _service(backend, tmp_path) as live:
        for path, params, field in [
            ("/v1/tasks/task_%00", {}, "task_id"),
            ("/v1/tasks", {"cursor": "\x00"}, "cursor"),
            ("/v1/tasks", {"cursor": "not-a-cursor"}, "cursor"),
        ]:
            response = await live.client.get(path, params=params)
            assert response.status_code == 422, (path, params, response.text)
            assert _fields(response.json()) == [field]


async def test_a_body_that_is_not_utf8_is_a_validation_error_naming_the_body(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        status, body = await _post_raw(live, "/v1/tasks", b'{"prompt":"\xff\xfe"}')
    assert status == 422
    assert body["error"]["code"] == "validation_error" and _fields(body) == ["body"]


async def test_an_oversized_body_is_refused_before_it_is_read(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        answer = await _declare(live, "POST", "/v1/tasks", 200 * 1024 * 1024)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
        assert b"payload_too_large" in answer and b"limits.max_body_bytes" in answer
        # A chunked body (no length declared) is counted as it arrives, and refused once past the cap.
        chunk = b"10000\r\n" + b"x" * 0x10000 + b"\r\n"
        chunked = b"POST /v1/tasks HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
        chunked += b"transfer-encoding: chunked\r\n\r\n" + chunk * 17  # 1.06 MiB, over the 1 MiB default
        host, port = live.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            sock.settimeout(10)
            await anyio.to_thread.run_sync(sock.sendall, chunked)
            answer = await anyio.to_thread.run_sync(_read_until_closed, sock)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:80]
        assert (await live.client.get("/v1/tasks")).json()["items"] == []


async def test_edited_plans_have_per_field_limits(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        task_id = (await live.submit("Echo a."))["id"]
        await live.wait_for(task_id, "approval_required")
        plan = (await live.task(task_id))["plan"]
        step = {k: plan["steps"][0][k] for k in ("id", "title", "instruction", "tools", "depends_on")}
        long_step = {**step, "instruction": "y" * 20_001}
        response = await live.client.put(
            f"/v1/tasks/{task_id}/plan", json={"base_version": 1, "plan": {"summary": "s", "steps": [long_step]}}
        )
        assert response.status_code == 422, response.text
        assert _fields(response.json()) == ["plan"]
        assert "steps.0.instruction" in response.json()["error"]["message"]
        huge_step = {**step, "instruction": "y" * 2**21}
        huge = json.dumps({"base_version": 1, "plan": {"summary": "s", "steps": [huge_step]}})
        assert (await _declare(live, "PUT", f"/v1/tasks/{task_id}/plan", len(huge))).startswith(b"HTTP/1.1 413")
        assert (await live.task(task_id))["current_plan_version"] == 1  # nothing stored


async def test_strict_types_refuse_booleans_and_strings_for_numbers(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        task_id = (await live.submit("Echo a."))["id"]
        await live.wait_for(task_id, "approval_required")
        for value in (True, "1", 1.5, None):
            response = await live.client.post(f"/v1/tasks/{task_id}/approve", json={"plan_version": value})
            assert response.status_code == 422, value
            assert _fields(response.json()) == ["plan_version"]
        assert (await live.task(task_id))["status"] == "awaiting_approval"


async def test_stream_cursors_are_checked_before_the_stream_starts(tmp_path: Path, backend: str) -> None:
    async with _service(backend, tmp_path) as live:
        task_id = (await live.submit("Echo a."))["id"]
        for headers, params, field in [
            ({"Last-Event-ID": str(2**63)}, {}, "Last-Event-ID"),
            ({"Last-Event-ID": str(2**31)}, {}, "Last-Event-ID"),
            ({"Last-Event-ID": "+5"}, {}, "Last-Event-ID"),
            ({}, {"after": 2**63}, "after"),
        ]:
            response = await live.client.get(f"/v1/tasks/{task_id}/stream", headers=headers, params=params)
            assert response.status_code == 422, (headers, params, response.text)
            error = response.json()["error"]
            assert field in (error["details"].get("field"), *[f["field"] for f in error["details"].get("fields", [])])


async def test_a_stream_resumed_beyond_the_last_event_still_ends_with_the_final_event(
    tmp_path: Path, backend: str
) -> None:
    async with _service(backend, tmp_path) as live:
        task_id = (await live.submit("Echo a."))["id"]
        await live.wait_for(task_id, "approval_required")
        await live.client.post(f"/v1/tasks/{task_id}/reject", json={"reason": "no"})
        events = await read_stream(live.client, task_id, last_event_id=10_000, timeout=10)
        assert events == []  # the stream closed: the task had ended
        task_id = (await live.submit("Echo b."))["id"]
        await live.wait_for(task_id, "approval_required")
        seen = []
        with anyio.fail_after(20):
            headers = {"Last-Event-ID": "10000"}
            async with aconnect_sse(live.client, "GET", f"/v1/tasks/{task_id}/stream", headers=headers) as source:
                assert source.response.status_code == 200  # open: now the task ends
                await live.client.post(f"/v1/tasks/{task_id}/reject", json={"reason": "no"})
                seen = [sse.event async for sse in source.aiter_sse() if sse.data]
        assert seen == ["task_rejected"]


async def test_an_empty_body_cancel_sent_as_a_form_or_text_is_refused_and_cancels_nothing(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        task_id = (await live.submit("Echo a."))["id"]
        await live.wait_for(task_id, "approval_required")
        for media in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"):
            response = await live.client.post(f"/v1/tasks/{task_id}/cancel", headers={"content-type": media})
            assert response.status_code == 415, (media, response.text)
        assert (await live.task(task_id))["status"] == "awaiting_approval"  # a web page cannot forge a cancel
        assert (await live.client.post(f"/v1/tasks/{task_id}/cancel")).status_code == 200  # no body, no type: fine
