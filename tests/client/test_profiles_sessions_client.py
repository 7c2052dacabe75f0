"""The client and the operator CLI name a profile and a session on submit, and read a session."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

from agent_runtime.client import AsyncClient, Client, InvalidRequest, NotFound, SessionPage
from tests.operator_cli.cli_runner import CLI
from tests.support.harness import live_service, make_settings


async def test_the_clients_submit_with_a_profile_and_session_and_list_the_session(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("default: general\nprofiles: {general: {}, careful: {limits: {max_parallel_steps: 1}}}\n")
    async with live_service(make_settings(tmp_path, profiles={"path": str(profiles)})) as live:
        async with AsyncClient(live.url) as client:
            first = await client.submit("Multiply 6 by 7.", profile="careful", session_id="calc")
            assert (first.profile, first.session_id) == ("careful", "calc") and first.profile_hash
            with anyio.fail_after(30):
                planned = await client.wait(first.id)
            assert planned.plan is not None and planned.plan.profile == "careful"
            with pytest.raises(InvalidRequest) as info:
                await client.submit("Echo.", profile="missing")
            assert info.value.details == {"field": "profile"}

        def sync_side() -> SessionPage:
            with Client(live.url) as client:
                second = client.submit("Do the same for 3 and 4.", session_id="calc")
                assert second.profile == "general"  # the default profile
                with pytest.raises(NotFound):
                    client.session("no-such-session")
                page = client.session("calc")
                assert [t.id for t in page.items] == [second.id, first.id]
                return client.session("calc", limit=1)

        one = await anyio.to_thread.run_sync(sync_side)
        assert len(one.items) == 1 and one.next_cursor == one.items[0].id


async def test_the_cli_submits_into_a_session_with_a_profile_and_shows_the_session(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        cli = CLI(live.url)
        submitted = await cli("tasks", "submit", "Echo hello.", "--session", "ops-7", "--profile", "default", "--json")
        assert submitted.code == 0, submitted.err
        task = submitted.json()
        assert (task["session_id"], task["profile"]) == ("ops-7", "default")

        table = await cli("tasks", "session", "ops-7")
        assert table.code == 0, table.err
        assert table.out.splitlines()[0].split() == ["task", "status", "profile", "created", "request"]
        assert task["id"] in table.out and "Echo hello." in table.out
        as_json = await cli("tasks", "session", "ops-7", "--json")
        assert [t["id"] for t in as_json.json()["items"]] == [task["id"]]

        unknown = await cli("tasks", "submit", "Echo.", "--profile", "nope")
        assert unknown.code != 0 and "unknown profile 'nope'" in unknown.err
        missing = await cli("tasks", "session", "nobody")
        assert missing.code != 0 and "session nobody not found" in missing.err
