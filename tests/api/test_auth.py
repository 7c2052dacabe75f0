"""Authentication and approval integrity over HTTP, with API keys on."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from agent_runtime.app import create_app
from agent_runtime.errors import ConfigError
from agent_runtime.services.keys import KeyService
from agent_runtime.store import schema as t
from agent_runtime.store.keys import KeyStore
from agent_runtime.store.rows import utcnow
from tests.support.harness import live_service, make_settings
from tests.support.identity import auth_settings, bearer, make_key, submit_as, wait_for_as

EDIT = {
    "summary": "edited",
    "steps": [{"id": "s1", "title": "echo", "instruction": "Echo hi", "tools": ["example.echo"], "depends_on": []}],
}


async def test_missing_unknown_revoked_and_expired_keys_are_refused_with_401(tmp_path: Path) -> None:
    async with live_service(auth_settings(tmp_path)) as live:
        good = await make_key(live, "vic", "acme", "viewer")
        assert (await live.client.get("/v1/tasks", headers=bearer(good))).status_code == 200
        missing = await live.client.get("/v1/tasks")
        assert missing.status_code == 401
        assert missing.json()["error"]["code"] == "unauthenticated"
        assert missing.headers["www-authenticate"].startswith("Bearer")
        assert (await live.client.get("/v1/tasks", headers=bearer("ar_" + "x" * 43))).status_code == 401
        assert (await live.client.get("/v1/tasks", headers={"Authorization": f"Basic {good}"})).status_code == 401
        keys = KeyService(KeyStore(live.runtime.store.engine))
        [record] = [r for r in await keys.list() if r.subject == "vic"]
        await keys.revoke(record.id)
        revoked = await live.client.get("/v1/tasks", headers=bearer(good))
        assert revoked.status_code == 401
        assert good not in revoked.text
        expiring = await keys.create(
            subject="eve", tenant="acme", roles=["viewer"], expires_at=utcnow() + timedelta(milliseconds=300)
        )
        stored = await keys.store.get(expiring.record.id)
        assert stored is not None and stored.active(utcnow() + timedelta(seconds=1)) is False
        # Time is not slept through: the store decides by expires_at, so move it into the past.
        async with live.runtime.store.engine.begin() as conn:
            await conn.execute(
                sa.update(t.api_keys)
                .where(t.api_keys.c.id == expiring.record.id)
                .values(expires_at=utcnow() - timedelta(seconds=1))
            )
        assert (await live.client.get("/v1/tasks", headers=bearer(expiring.key))).status_code == 401


async def test_keys_are_stored_only_as_hashes_and_never_logged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    async with live_service(auth_settings(tmp_path)) as live:
        key = await make_key(live, "sam", "acme", "submitter")
        await live.client.post("/v1/tasks", json={"prompt": "Echo hi."}, headers=bearer(key))
        await live.client.get("/v1/tasks", headers=bearer(key + "x"))
    output = capsys.readouterr()
    everything = output.out + output.err
    database = _database_bytes(tmp_path)
    assert key not in everything and key.encode() not in database
    assert hashlib.sha256(key.encode()).hexdigest().encode() in database


def _database_bytes(folder: Path) -> bytes:
    """The SQLite database with its WAL, as bytes (what a stolen disk or backup would hold)."""
    return b"".join(p.read_bytes() for p in sorted(folder.glob("db.sqlite*")))


async def test_actor_in_a_body_must_be_the_authenticated_subject_and_the_trail_records_subjects(
    tmp_path: Path,
) -> None:
    async with live_service(auth_settings(tmp_path)) as live:
        sub = await make_key(live, "sam", "acme", "submitter")
        appr = await make_key(live, "alice", "acme", "approver", "viewer")
        task_id = await submit_as(live, sub, "Echo hi.")
        forged = await live.client.post(
            f"/v1/tasks/{task_id}/approve", json={"plan_version": 1, "actor": "mallory"}, headers=bearer(appr)
        )
        assert forged.status_code == 403 and forged.json()["error"]["details"]["field"] == "actor"
        ok = await live.client.post(
            f"/v1/tasks/{task_id}/approve",
            json={"plan_version": 1, "comment": "looks fine", "actor": "alice"},
            headers=bearer(appr),
        )
        assert ok.status_code == 202, ok.text
        assert ok.json()["submitted_by"] == "sam" and ok.json()["tenant"] == "acme"
        trail = (await live.client.get(f"/v1/tasks/{task_id}/approvals", headers=bearer(appr))).json()
        plan = (await live.client.get(f"/v1/tasks/{task_id}", headers=bearer(appr))).json()["plan"]
    assert trail == [
        {
            "plan_version": 1,
            "decision": "approved",
            "actor": "alice",
            "actor_roles": ["approver", "viewer"],
            "content_hash": plan["content_hash"],
            "comment": "looks fine",
            "created_at": trail[0]["created_at"],
        }
    ]


async def test_the_submitter_may_not_approve_its_own_task_unless_allowed(tmp_path: Path) -> None:
    async with live_service(auth_settings(tmp_path)) as live:
        both = await make_key(live, "sam", "acme", "submitter", "approver")
        task_id = await submit_as(live, both, "Echo hi.")
        refused = await live.client.post(f"/v1/tasks/{task_id}/approve", json={"plan_version": 1}, headers=bearer(both))
        assert refused.status_code == 403
        assert refused.json()["error"]["code"] == "self_approval_forbidden"
    (tmp_path / "b").mkdir()
    allowed = auth_settings(tmp_path / "b", approvals={"allow_self_approval": True})
    async with live_service(allowed) as live:
        both = await make_key(live, "sam", "acme", "submitter", "approver")
        task_id = await submit_as(live, both, "Echo hi.")
        ok = await live.client.post(f"/v1/tasks/{task_id}/approve", json={"plan_version": 1}, headers=bearer(both))
        assert ok.status_code == 202


async def test_an_operator_who_edited_the_plan_may_not_approve_that_version(tmp_path: Path) -> None:
    async with live_service(auth_settings(tmp_path)) as live:
        sub = await make_key(live, "sam", "acme", "submitter")
        bob = await make_key(live, "bob", "acme", "approver")
        alice = await make_key(live, "alice", "acme", "approver")
        task_id = await submit_as(live, sub, "Echo hi.")
        edit = {"base_version": 1, "plan": EDIT}
        assert (await live.client.put(f"/v1/tasks/{task_id}/plan", json=edit, headers=bearer(bob))).status_code == 200
        mine = await live.client.post(f"/v1/tasks/{task_id}/approve", json={"plan_version": 2}, headers=bearer(bob))
        assert mine.status_code == 403 and mine.json()["error"]["code"] == "self_approval_forbidden"
        theirs = await live.client.post(f"/v1/tasks/{task_id}/approve", json={"plan_version": 2}, headers=bearer(alice))
        assert theirs.status_code == 202


async def test_four_eyes_needs_two_distinct_approvers_and_a_new_version_discards_partial_approvals(
    tmp_path: Path,
) -> None:
    async with live_service(auth_settings(tmp_path, approvals={"required": 2})) as live:
        sub = await make_key(live, "sam", "acme", "submitter")
        alice = await make_key(live, "alice", "acme", "approver")
        bob = await make_key(live, "bob", "acme", "approver")
        carol = await make_key(live, "carol", "acme", "approver")
        task_id = await submit_as(live, sub, "Echo hi.")

        async def approve(key: str, version: int, **extra: object) -> tuple[int, dict[str, Any]]:
            r = await live.client.post(
                f"/v1/tasks/{task_id}/approve", json={"plan_version": version, **extra}, headers=bearer(key)
            )
            return r.status_code, r.json()

        status, body = await approve(alice, 1)
        assert status == 202 and body["status"] == "awaiting_approval"
        status, body = await approve(alice, 1)  # the same approver again: counted once
        assert status == 200 and body["status"] == "awaiting_approval"
        inbox = (await live.client.get("/v1/approvals", headers=bearer(alice))).json()["items"]
        assert inbox == []  # alice has done her part
        [waiting] = (await live.client.get("/v1/approvals", headers=bearer(bob))).json()["items"]
        assert (waiting["task_id"], waiting["approvals"], waiting["required"]) == (task_id, 1, 2)

        # bob edits: a new version; alice's approval of v1 no longer counts, and v1 is stale.
        edit = {"base_version": 1, "plan": EDIT}
        assert (await live.client.put(f"/v1/tasks/{task_id}/plan", json=edit, headers=bearer(bob))).status_code == 200
        status, body = await approve(carol, 1)
        assert status == 409 and body["error"]["code"] == "stale_plan_version"
        status, body = await approve(carol, 2, content_hash="sha256:" + "0" * 64)
        assert status == 409 and body["error"]["code"] == "content_hash_mismatch"
        current = (await live.client.get(f"/v1/tasks/{task_id}", headers=bearer(carol))).json()["plan"]
        status, body = await approve(carol, 2, content_hash=current["content_hash"])
        assert status == 202 and body["status"] == "awaiting_approval"  # 1 of 2 for v2
        status, body = await approve(alice, 2)
        assert status == 202 and body["status"] in ("approved", "executing", "completed")
        events = await wait_for_as(live.client, alice, task_id, "task_approved")
    types = [e["type"] for e in events]
    assert types.count("approval_recorded") == 2 and types.count("approvals_discarded") == 1
    discarded = next(e for e in events if e["type"] == "approvals_discarded")
    assert discarded["data"] == {"plan_version": 1, "approvers": ["alice"]}
    approved = next(e for e in events if e["type"] == "task_approved")
    assert approved["data"]["approvers"] == ["carol", "alice"] and approved["data"]["plan_version"] == 2


async def test_the_inbox_lists_what_waits_for_the_caller_newest_first_in_its_tenant_with_pages(
    tmp_path: Path,
) -> None:
    async with live_service(auth_settings(tmp_path)) as live:
        sam = await make_key(live, "sam", "acme", "submitter")
        other = await make_key(live, "olga", "globex", "submitter")
        alice = await make_key(live, "alice", "acme", "approver", "submitter")
        first = await submit_as(live, sam, "Echo one.")
        second = await submit_as(live, sam, "Echo two.")
        await submit_as(live, alice, "Echo alice's own.")  # never in alice's inbox: she may not approve it
        await submit_as(live, other, "Echo globex.")
        page = (await live.client.get("/v1/approvals?limit=1", headers=bearer(alice))).json()
        assert [i["task_id"] for i in page["items"]] == [second]
        item = page["items"][0]
        assert item["prompt_excerpt"] == "Echo two." and item["step_count"] >= 1 and item["tools"]
        assert item["plan_version"] == 1 and item["plan_summary"] and item["submitted_by"] == "sam"
        rest = (
            await live.client.get(f"/v1/approvals?limit=1&cursor={page['next_cursor']}", headers=bearer(alice))
        ).json()
        assert [i["task_id"] for i in rest["items"]] == [first]
        last = await live.client.get(f"/v1/approvals?limit=1&cursor={rest['next_cursor']}", headers=bearer(alice))
        assert last.json()["items"] == [] and last.json()["next_cursor"] is None


async def test_lists_are_scoped_to_the_tenant_and_a_submitter_sees_only_its_own(tmp_path: Path) -> None:
    async with live_service(auth_settings(tmp_path)) as live:
        sam = await make_key(live, "sam", "acme", "submitter")
        sue = await make_key(live, "sue", "acme", "submitter")
        viewer = await make_key(live, "vic", "acme", "viewer")
        olga = await make_key(live, "olga", "globex", "submitter", "viewer")
        mine = await submit_as(live, sam, "Echo sam.")
        hers = await submit_as(live, sue, "Echo sue.")
        theirs = await submit_as(live, olga, "Echo olga.")

        async def ids(key: str) -> set[str]:
            return {t["id"] for t in (await live.client.get("/v1/tasks", headers=bearer(key))).json()["items"]}

        assert await ids(sam) == {mine}
        assert await ids(viewer) == {mine, hers}
        assert await ids(olga) == {theirs}


async def test_mutating_routes_refuse_bodies_that_are_not_json(tmp_path: Path) -> None:
    async with live_service(auth_settings(tmp_path)) as live:
        sam = await make_key(live, "sam", "acme", "submitter")
        form = await live.client.post(
            "/v1/tasks",
            content=b"prompt=hi",
            headers={**bearer(sam), "content-type": "application/x-www-form-urlencoded"},
        )
        assert form.status_code == 415 and form.json()["error"]["code"] == "unsupported_media_type"
        plain = await live.client.post(
            "/v1/tasks", content=b'{"prompt":"hi"}', headers={**bearer(sam), "content-type": "text/plain"}
        )
        assert plain.status_code == 415


async def test_metrics_can_require_their_own_scrape_token(tmp_path: Path) -> None:
    async with live_service(auth_settings(tmp_path, auth={"metrics_token": "scrape-secret-123"})) as live:
        assert (await live.client.get("/metrics")).status_code == 401
        assert (await live.client.get("/metrics", headers=bearer("wrong"))).status_code == 401
        assert (await live.client.get("/metrics", headers=bearer("scrape-secret-123"))).status_code == 200
        assert (await live.client.get("/healthz")).status_code == 200
        assert (await live.client.get("/readyz")).status_code == 200


async def test_responses_carry_browser_safety_headers_and_cors_is_off_unless_allowed(tmp_path: Path) -> None:
    async with live_service(auth_settings(tmp_path)) as live:
        health = await live.client.get("/healthz")
        assert health.headers["x-content-type-options"] == "nosniff"
        assert health.headers["referrer-policy"] == "no-referrer"
        docs = await live.client.get("/docs")
        csp = docs.headers["content-security-policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp and "'unsafe-eval'" not in csp
        nonce = csp.split("'nonce-")[1].split("'")[0]
        assert f'<script nonce="{nonce}">' in docs.text
        preflight = await live.client.options(
            "/v1/tasks", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert "access-control-allow-origin" not in preflight.headers
    (tmp_path / "b").mkdir()
    allowed = auth_settings(tmp_path / "b", cors={"allow_origins": ["https://console.example"]})
    async with live_service(allowed) as live:
        preflight = await live.client.options(
            "/v1/tasks",
            headers={
                "Origin": "https://console.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        assert preflight.headers["access-control-allow-origin"] == "https://console.example"
        evil = await live.client.options(
            "/v1/tasks", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
        )
        assert evil.headers.get("access-control-allow-origin") != "https://evil.example"


async def test_development_start_without_keys_creates_and_prints_one_admin_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = make_settings(tmp_path, auth={"mode": "keys", "bootstrap_admin_key": True})
    async with live_service(settings) as live:
        out = capsys.readouterr().out
        key = next(line.strip() for line in out.splitlines() if line.strip().startswith("ar_"))
        me = await live.client.post("/v1/admin/reload-tools", headers=bearer(key))
        assert me.status_code == 200
    async with live_service(settings):
        assert "ar_" not in capsys.readouterr().out  # printed once: the second start finds the key


async def test_disabled_authentication_warns_on_readyz_and_production_refuses_it(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        ready = (await live.client.get("/readyz")).json()
        assert "DISABLED" in ready["warnings"][0]
    with pytest.raises(ConfigError, match="auth.mode is 'disabled' while server.environment is 'production'"):
        make_settings(
            tmp_path,
            server={"environment": "production"},
            llm={"planner": {"provider": "openai", "api_key": "k"}, "executor": {"provider": "openai", "api_key": "k"}},
        )
    create_app(make_settings(tmp_path))  # development with auth disabled is allowed
