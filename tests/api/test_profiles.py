"""Agent profiles through the public API, with the real planner and executor: the wire fake shows
what reached the model (system prompts, model names, the tool catalogue), the example MCP server
runs the calls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa

from agent_runtime.store import schema
from agent_runtime.testing import FakeLLM, RecordedRequest, ScriptedModel, one_step_plan, serve_on_loopback
from tests.support.harness import EXAMPLE_SERVER, live_service, make_settings, read_stream, write_registry

PROFILES = """
default: general
profiles:
  general: {}
  narrow:
    planner: {system_prompt: "NARROW-PLANNER: at most {max_steps} steps.", model: gpt-narrow}
    executor: {system_prompt: "NARROW-EXECUTOR", model: gpt-narrow-exec}
    servers: [example]
    limits: {max_steps_per_plan: 2}
"""
SECOND_SERVER = (
    f"  - id: other\n    type: local_stdio\n    config:\n      command: ${{PYTHON}}\n      args: ['{EXAMPLE_SERVER}']\n"
)


def _role(url: str) -> dict[str, Any]:
    return {"provider": "openai", "model": "gpt-primary", "base_url": f"{url}/v1", "api_key": "sk-test-profiles"}


def _system(request: RecordedRequest) -> str:
    return str(request.body["messages"][0]["content"])


def _planning(fake: FakeLLM) -> list[RecordedRequest]:
    return [r for r in fake.requests if "response_format" in r.body]


def _steps(fake: FakeLLM) -> list[RecordedRequest]:
    return [r for r in fake.requests if r.body.get("tools")]


async def test_a_profile_sets_prompts_models_and_servers_of_planner_and_executor(tmp_path: Path) -> None:
    model = ScriptedModel(one_step_plan("example.echo"), {"s1": [("example.echo", {"text": "hi"})]})
    fake = model.fake()
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(PROFILES)
    registry = write_registry(tmp_path, extra=SECOND_SERVER)
    with serve_on_loopback(fake) as url:
        role = _role(url)
        cheap, dear = (
            {"input_usd_per_mtok": 0.01, "output_usd_per_mtok": 0.01},
            {
                "input_usd_per_mtok": 1000,
                "output_usd_per_mtok": 1000,
            },
        )
        prices = {"models": {"gpt-primary": cheap, "gpt-narrow": dear, "gpt-narrow-exec": dear}}
        settings = make_settings(
            tmp_path,
            registry=registry,
            llm={"planner": role, "executor": role},
            profiles={"path": str(profiles)},
            pricing=prices,
        )
        async with live_service(settings) as live:
            created = await live.submit("echo hi", profile="narrow")
            assert created["profile"] == "narrow" and created["profile_hash"].startswith("sha256:")
            events = await live.wait_for(created["id"], "approval_required")
            proposed = next(e["data"] for e in events if e["sse_event"] == "plan_proposed")
            assert (proposed["profile"], proposed["profile_hash"]) == ("narrow", created["profile_hash"])
            assert proposed["author"] == "planner:openai/gpt-narrow"
            task = await live.task(created["id"])
            assert (task["plan"]["profile"], task["plan"]["profile_hash"]) == ("narrow", created["profile_hash"])
            assert (await live.approve(created["id"], 1)).status_code == 202
            done = await read_stream(live.client, created["id"], until="task_completed")
            usage = {e["data"]["role"]: e["data"]["model"] for e in events + done if e["sse_event"] == "llm_usage"}
            assert usage == {"planner": "gpt-narrow", "executor": "gpt-narrow-exec"}
            narrow = list(fake.requests)

            plain = await live.submit("echo hi")  # the default profile: today's prompts and models
            assert plain["profile"] == "general"
            plain_events = await live.wait_for(plain["id"], "approval_required")
            plain_proposed = next(e["data"] for e in plain_events if e["sse_event"] == "plan_proposed")

    # The same plan is estimated with each task's own models: the profile's cost a hundred thousand
    # times more here.
    assert proposed["estimate"]["cost_usd"] > 1000 * plain_proposed["estimate"]["cost_usd"] > 0

    [planning] = [r for r in narrow if "response_format" in r.body]
    assert planning.body["model"] == "gpt-narrow"
    assert _system(planning) == "NARROW-PLANNER: at most 2 steps."
    catalogue = str(planning.body["messages"][1]["content"])
    assert "example.echo" in catalogue and "other." not in catalogue  # only the profile's servers
    turns = [r for r in narrow if r.body.get("tools")]  # the call, then the answer to its result
    assert turns and {(r.body["model"], _system(r)) for r in turns} == {("gpt-narrow-exec", "NARROW-EXECUTOR")}
    default_planning = _planning(fake)[-1]
    assert default_planning.body["model"] == "gpt-primary"
    assert _system(default_planning).startswith("You are the planner of a task service.")
    assert "other.echo" in str(default_planning.body["messages"][1]["content"])


async def test_a_reload_changes_new_tasks_and_never_a_submitted_one(tmp_path: Path) -> None:
    model = ScriptedModel(one_step_plan("example.echo"), {"s1": [("example.echo", {"text": "hi"})]})
    fake = model.fake()
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(PROFILES)
    with serve_on_loopback(fake) as url:
        role = _role(url)
        settings = make_settings(
            tmp_path, registry=write_registry(tmp_path), llm={"planner": role, "executor": role},
            profiles={"path": str(profiles)},
        )  # fmt: skip
        async with live_service(settings) as live:
            first = await live.submit("echo hi", profile="narrow")
            await live.wait_for(first["id"], "approval_required")

            profiles.write_text(PROFILES.replace("NARROW-EXECUTOR", "CHANGED-EXECUTOR"))
            reloaded = await live.client.post("/v1/admin/reload-profiles")
            assert reloaded.status_code == 200, reloaded.text
            new_hash = reloaded.json()["profiles"]["narrow"]
            assert new_hash != first["profile_hash"] and reloaded.json()["default"] == "general"

            # Approved after the reload, the first task still runs the profile it was planned under.
            assert (await live.approve(first["id"], 1)).status_code == 202
            await read_stream(live.client, first["id"], until="task_completed")
            assert {_system(r) for r in _steps(fake)} == {"NARROW-EXECUTOR"}
            assert (await live.task(first["id"]))["profile_hash"] == first["profile_hash"]

            second = await live.submit("echo hi", profile="narrow")
            assert second["profile_hash"] == new_hash
            await live.wait_for(second["id"], "approval_required")
            assert (await live.approve(second["id"], 1)).status_code == 202
            await read_stream(live.client, second["id"], until="task_completed")
            assert _system(_steps(fake)[-1]) == "CHANGED-EXECUTOR"

            profiles.write_text("default: general\nprofiles: {general: {servers: [nope]}}\n")
            refused = await live.client.post("/v1/admin/reload-profiles")
            assert refused.status_code == 422
            assert f"{profiles}: profile 'general': servers: 'nope'" in refused.json()["error"]["message"]
            kept = await live.submit("echo hi", profile="narrow")  # the old profiles stay in force
            assert kept["profile_hash"] == new_hash


async def test_an_unknown_profile_is_a_422_naming_profile_and_stores_nothing(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        response = await live.client.post("/v1/tasks", json={"prompt": "echo hi", "profile": "nope"})
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["details"]["field"] == "profile" and "unknown profile 'nope'" in error["message"]
        bad_name = await live.client.post("/v1/tasks", json={"prompt": "echo hi", "profile": "no spaces"})
        assert bad_name.status_code == 422 and "profile" in bad_name.text
        assert (await live.client.get("/v1/tasks")).json()["items"] == []


async def test_without_a_profiles_file_tasks_run_under_the_builtin_default_profile(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        created = await live.submit("Echo hello.")
        assert created["profile"] == "default"
        events = await live.wait_for(created["id"], "approval_required")
        proposed = next(e["data"] for e in events if e["sse_event"] == "plan_proposed")
        assert proposed["profile"] == "default" and proposed["profile_hash"] == created["profile_hash"]
        assert proposed["author"] == "planner:offline/offline-test"


async def test_a_profile_step_limit_bounds_the_plan(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text("profiles:\n  default: {limits: {max_steps_per_plan: 1}}\n")
    async with live_service(make_settings(tmp_path, profiles={"path": str(profiles)})) as live:
        created = await live.submit("Add 1 and 2. Echo hi. Multiply 2 by 3.")  # three steps from the offline model
        events = await live.wait_for(created["id"], "task_failed")
        assert [e["data"]["problems"] for e in events if e["sse_event"] == "plan_invalid"][0]
        assert "at most 1" in str(events[-1]["data"]["error"]["message"])


async def test_a_task_whose_stored_profile_no_longer_matches_its_hash_fails_instead_of_running(tmp_path: Path) -> None:
    profiles = tmp_path / "profiles.yaml"
    profiles.write_text(PROFILES)
    async with live_service(make_settings(tmp_path, profiles={"path": str(profiles)})) as live:
        created = await live.submit("Echo hello.", profile="narrow")
        await live.wait_for(created["id"], "approval_required")
        altered = {"executor": {"system_prompt": "something nobody approved"}, "planner": {}, "limits": {}}
        async with live.runtime.store.engine.begin() as conn:  # the row altered behind the service's back
            await conn.execute(
                sa.update(schema.tasks).where(schema.tasks.c.id == created["id"]).values(profile_content=altered)
            )
        assert (await live.approve(created["id"], 1)).status_code == 202
        events = await read_stream(live.client, created["id"], until="task_failed")
        error = events[-1]["data"]["error"]
        assert "does not match its recorded hash" in error["message"]
        assert error["details"] == {"profile": "narrow", "profile_hash": created["profile_hash"]}
        assert not any(e["sse_event"] == "step_started" for e in events)
