"""The persisted tool catalogue: stored outcomes are served at start without starting a server,
a changed entry is discovered again, a failed discovery is marked and never fatal; SQLite and
PostgreSQL (``store/catalogue.py``), and through the service (``runtime.serve_background``)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_runtime.runtime import Overrides
from agent_runtime.settings import ToolSettings
from agent_runtime.store.catalogue import CatalogueStore
from agent_runtime.store.store import TaskStore
from agent_runtime.testing import ScriptedModel, one_step_plan
from agent_runtime.tools.catalog import ToolCatalog, entry_hash
from tests.support.databases import migrated_store
from tests.support.harness import live_service, make_settings, write_registry
from tests.tools.tool_helpers import REPO, SCRIPTS, make_registry, script_entry


@pytest.fixture(params=["sqlite", "postgres"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TaskStore]:
    async with migrated_store(request.param, tmp_path) as store:
        yield store


def switched(server_id: str, script: str, switch: Path, **extra: Any) -> dict[str, Any]:
    """An entry for ``script`` (``fail_when_file_exists.py`` / ``hang_when_file_exists.py``),
    healthy until ``switch`` exists."""
    entry = script_entry(server_id, script, **extra)
    entry["config"]["args"].append(str(switch))
    return entry


async def test_a_stored_catalogue_is_served_at_start_without_starting_the_server(
    store: TaskStore, tool_settings: ToolSettings, tmp_path: Path
) -> None:
    switch = tmp_path / "broken"
    registry = make_registry(switched("flaky", "fail_when_file_exists.py", switch))
    first = ToolCatalog(registry, tool_settings, CatalogueStore(store))
    with anyio.fail_after(60):
        await first.refresh()
    discovered = first.status()["flaky"]
    assert discovered.ok and discovered.source == "discovery"
    switch.write_text("on")  # from now on the server exits at start

    restarted = ToolCatalog(registry, tool_settings, CatalogueStore(store))
    assert restarted.pending() == ["flaky"]
    assert await restarted.restore() == ["flaky"]
    served = restarted.status()["flaky"]
    assert (served.ok, served.source, served.pending, served.error) == (True, "database", False, None)
    assert served.discovered_at == discovered.discovered_at
    assert [t.qualified_name for t in restarted.tools()] == ["flaky.echo", "flaky.whoami"]
    echo = restarted.get("flaky.echo")
    assert echo == first.get("flaky.echo")
    assert echo is not None and echo.read_only
    assert restarted.pending() == []
    with anyio.fail_after(1):
        await restarted.wait_settled()  # nothing to wait for: the stored outcome counts

    with anyio.fail_after(60):
        await restarted.refresh()  # the background refresh: the server is broken now
    marked = restarted.status()["flaky"]
    assert not marked.ok and marked.source == "discovery"
    assert "flaky server: refusing to start (exit 4)" in (marked.error or "")
    assert [t.name for t in marked.tools] == ["echo", "whoami"]  # the last good list stays

    again = ToolCatalog(registry, tool_settings, CatalogueStore(store))
    assert await again.restore() == ["flaky"]
    stored = again.status()["flaky"]
    assert not stored.ok and "exit 4" in (stored.error or "")
    assert stored.discovered_at == discovered.discovered_at
    assert [t.name for t in stored.tools] == ["echo", "whoami"]


async def test_a_changed_registry_entry_is_discovered_again_not_served_from_the_store(
    store: TaskStore, tool_settings: ToolSettings, tmp_path: Path
) -> None:
    registry = make_registry(script_entry("tiny", "tiny_server.py"))
    with anyio.fail_after(60):
        await ToolCatalog(registry, tool_settings, CatalogueStore(store)).refresh()
    changed = make_registry(
        script_entry("tiny", "tiny_server.py", tools={"echo": {"idempotent": False}}),
        script_entry("other", "tiny_server.py"),
    )
    assert entry_hash(changed.servers[0], changed) != entry_hash(registry.servers[0], registry)
    catalog = ToolCatalog(changed, tool_settings, CatalogueStore(store))
    assert await catalog.restore() == []
    assert catalog.pending() == ["tiny", "other"]
    assert catalog.tools() == []
    async with anyio.create_task_group() as tg:
        tg.start_soon(catalog.refresh)
        with anyio.fail_after(60):
            await catalog.wait_settled()
    assert all(s.ok and s.source == "discovery" for s in catalog.status().values())
    echo = catalog.get("tiny.echo")
    assert echo is not None and echo.overridden == ("idempotent",)
    rows = await CatalogueStore(store).load()
    assert rows["tiny"].entry_hash == entry_hash(changed.servers[0], changed)
    assert {t["name"] for t in rows["other"].tools} == {"echo", "whoami"}


async def test_a_server_whose_first_discovery_fails_is_marked_settled_and_stored(
    store: TaskStore, tool_settings: ToolSettings
) -> None:
    registry = make_registry(script_entry("crashy", "crash_server.py"), script_entry("tiny", "tiny_server.py"))
    catalog = ToolCatalog(registry, tool_settings, CatalogueStore(store))
    with anyio.fail_after(60):
        await catalog.refresh()
    crashy = catalog.status()["crashy"]
    assert (crashy.ok, crashy.pending, crashy.discovered_at, crashy.tools) == (False, False, None, [])
    assert "cannot find its configuration" in (crashy.error or "")
    assert [t.server_id for t in catalog.tools()] == ["tiny", "tiny"]

    restarted = ToolCatalog(registry, tool_settings, CatalogueStore(store))
    assert await restarted.restore() == ["crashy", "tiny"]
    assert restarted.pending() == []  # a stored failure counts: nobody waits for it again
    assert not restarted.status()["crashy"].ok
    assert "cannot find its configuration" in (restarted.status()["crashy"].error or "")


async def test_an_unmigrated_database_costs_only_the_cache(tool_settings: ToolSettings, tmp_path: Path) -> None:
    from agent_runtime.settings import DatabaseSettings
    from agent_runtime.store.engine import create_engine
    from agent_runtime.store.store import open_store

    store = open_store(create_engine(DatabaseSettings(url=f"sqlite+aiosqlite:///{tmp_path / 'empty.sqlite'}")))
    try:
        catalog = ToolCatalog(
            make_registry(script_entry("tiny", "tiny_server.py")), tool_settings, CatalogueStore(store)
        )
        assert await catalog.restore() == []
        with anyio.fail_after(60):
            await catalog.refresh()  # the write fails (no table): logged, discovery unaffected
        assert catalog.status()["tiny"].ok
    finally:
        await store.aclose()


# -- through the service ---------------------------------------------------------------------


def _slow_registry(tmp_path: Path, switch: Path, connect_timeout: int = 120) -> Path:
    script = SCRIPTS / "hang_when_file_exists.py"
    extra = (
        f"  - id: slow\n    type: local_stdio\n    connect_timeout_seconds: {connect_timeout}\n    config:\n"
        f"      command: ${{PYTHON}}\n      args: ['{script}', '{switch}']\n"
    )
    return write_registry(tmp_path, extra=extra)


async def test_a_restart_is_ready_and_plans_with_the_stored_tools_while_a_slow_server_is_discovered(
    tmp_path: Path,
) -> None:
    switch = tmp_path / "slow-now"
    settings = make_settings(tmp_path, registry=_slow_registry(tmp_path, switch))
    model = ScriptedModel(one_step_plan("slow.echo"))
    overrides = Overrides(planner_llm=model.client(), executor_llm=model.client())
    async with live_service(settings, overrides) as live:
        assert (await live.client.get("/v1/tools")).json()["servers"]["slow"]["ok"] is True
    switch.write_text("on")  # from now on the server's start hangs

    async with live_service(settings, overrides) as live:
        ready = await live.client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["tool_servers"]["pending"] == 0
        listed = (await live.client.get("/v1/tools")).json()
        slow = listed["servers"]["slow"]
        assert (slow["ok"], slow["source"], slow["discovering"]) == (True, "database", True)
        assert "slow.echo" in {t["name"] for t in listed["tools"]}
        created = await live.submit("use the slow server")
        events = await live.wait_for(created["id"], "approval_required")
        assert any(e["sse_event"] == "plan_proposed" for e in events)
        assert live.runtime.catalog.status()["slow"].discovering  # its discovery still hangs


async def test_a_first_start_is_ready_at_once_and_plans_after_the_first_discovery_ends(tmp_path: Path) -> None:
    switch = tmp_path / "slow-now"
    switch.write_text("on")
    settings = make_settings(tmp_path, registry=_slow_registry(tmp_path, switch, connect_timeout=5))
    model = ScriptedModel(one_step_plan("example.echo"))
    overrides = Overrides(planner_llm=model.client(), executor_llm=model.client())
    async with live_service(settings, overrides, wait_for_tools=False) as live:
        ready = await live.client.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["checks"]["tool_servers"]["pending"] >= 1
        created = await live.submit("plan after discovery")
        assert live.runtime.catalog.pending()  # still discovering: the task waits, queued
        assert (await live.task(created["id"]))["status"] == "queued"
        await live.wait_for(created["id"], "approval_required")
        slow = live.runtime.catalog.status()["slow"]
        assert not slow.pending and not slow.ok  # marked failed (connect timeout), not fatal
        assert "did not finish connecting within 5 s" in (slow.error or "")
        counts = (await live.client.get("/readyz")).json()["checks"]["tool_servers"]
        assert counts == {"ok": 1, "pending": 0, "failed": 1}


def test_the_serve_path_does_not_import_the_mcp_client(tmp_path: Path) -> None:
    # A fresh interpreter: this test process has imported mcp already.
    settings = f"make_settings(Path({str(tmp_path)!r}))"
    code = (
        "import sys\nfrom pathlib import Path\n"
        "import agent_runtime.cli, agent_runtime.server\n"
        "from agent_runtime.app import create_app\n"
        "from tests.support.harness import make_settings\n"
        f"create_app({settings})\n"
        "loaded = sorted(m for m in sys.modules if m == 'mcp' or m.startswith(('mcp.', 'mcp_types')))\n"
        "assert not loaded, loaded\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
