"""ToolCatalog: concurrent discovery with annotations, failures reported, registry reloads."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import anyio

from agent_runtime.settings import ToolSettings
from agent_runtime.tools.catalog import ToolCatalog
from tests.tools.tool_helpers import example_entry, make_registry, read_call_log, running_pool, script_entry


async def test_discovery_lists_every_tool_with_annotations_and_overrides(tool_settings: ToolSettings) -> None:
    registry = make_registry(
        example_entry(tools={"write_note": {"idempotent": True}, "add": {"idempotent": False}}),
        example_entry("plain"),
    )
    catalog = ToolCatalog(registry, tool_settings)
    before = datetime.now(UTC)
    with anyio.fail_after(60):
        status = await catalog.refresh()
    assert all(s.ok for s in status.values())
    assert all(s.discovered_at is not None and s.discovered_at >= before for s in status.values())
    names = [t.qualified_name for t in catalog.tools()]
    assert names[:2] == ["example.write_note", "example.read_note"]
    assert len(names) == 16
    overridden = catalog.get("example.write_note")
    assert overridden is not None
    assert overridden.idempotent
    assert overridden.safe_to_repeat
    plain = catalog.get("plain.write_note")
    assert plain is not None
    assert not plain.safe_to_repeat
    assert plain.destructive is True
    demoted = catalog.get("example.add")
    assert demoted is not None
    assert not demoted.safe_to_repeat
    read = catalog.get("plain.read_note")
    assert read is not None
    assert read.read_only
    assert read.input_schema["properties"]["name"]["type"] == "string"
    assert catalog.get("plain.nope") is None
    assert catalog.get("unqualified") is None


async def test_a_failing_server_is_reported_and_the_others_are_discovered(
    tool_settings: ToolSettings,
) -> None:
    registry = make_registry(
        example_entry(),
        script_entry("crashy", "crash_server.py"),
        script_entry("hung", "hung_server.py", connect_timeout_seconds=0.5),
        example_entry("off", enabled=False),
    )
    catalog = ToolCatalog(registry, tool_settings)
    with anyio.fail_after(60):
        status = await catalog.refresh()
    assert set(status) == {"example", "crashy", "hung"}  # disabled servers are not in the catalogue
    assert status["example"].ok
    assert not status["crashy"].ok
    assert "cannot find its configuration" in (status["crashy"].error or "")
    assert "did not finish connecting within 0.5 s" in (status["hung"].error or "")
    assert status["hung"].discovered_at is None
    assert {t.server_id for t in catalog.tools()} == {"example"}


async def test_discovery_runs_outside_every_task_workspace(tool_settings: ToolSettings, tmp_path: Path) -> None:
    catalog = ToolCatalog(make_registry(example_entry()), tool_settings)
    with anyio.fail_after(60):
        await catalog.refresh()
    assert not tool_settings.workspace_root.exists()


async def test_replacing_the_registry_forgets_removed_and_changed_servers(
    tool_settings: ToolSettings,
) -> None:
    catalog = ToolCatalog(make_registry(example_entry(), example_entry("second")), tool_settings)
    with anyio.fail_after(60):
        await catalog.refresh()
    catalog.replace_registry(make_registry(example_entry(tools={"add": {"idempotent": False}})))
    assert catalog.tools() == []
    assert set(catalog.status()) == {"example"}
    with anyio.fail_after(60):
        await catalog.refresh()
    assert {t.server_id for t in catalog.tools()} == {"example"}
    add = catalog.get("example.add")
    assert add is not None
    assert not add.safe_to_repeat


async def test_a_server_that_takes_the_task_id_is_discovered_and_gets_it_in_each_task(
    tool_settings: ToolSettings, tmp_path: Path
) -> None:
    log = tmp_path / "calls-${TASK_ID}.jsonl"
    entry = example_entry(config={**example_entry()["config"], "env": {"EXAMPLE_MCP_CALL_LOG": str(log)}})
    registry = make_registry(entry)
    catalog = ToolCatalog(registry, tool_settings)
    with anyio.fail_after(60):
        status = await catalog.refresh()
    assert status["example"].ok, status["example"].error
    assert catalog.get("example.echo") is not None
    async with running_pool(registry, tool_settings) as pool:
        workspace = pool.workspaces.create("task-7")
        async with pool.open_task("task-7", ["example"], {"example.echo"}, workspace) as tools:
            assert (await tools.call("example.echo", {"text": "hi"})).text == "hi"
    assert [e["tool"] for e in read_call_log(tmp_path / "calls-task-7.jsonl")] == ["echo", "echo"]
