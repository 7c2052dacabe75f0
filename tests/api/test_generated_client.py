"""A client generated from the published OpenAPI document by a well-known generator works.

``openapi-python-client`` (the dev group) generates a package from the live service's
``/openapi.json`` into ``tmp_path``; the test imports it and round-trips submit → get → approve
against the live service. The generator is a separate program: if it is not installed, the tests
skip and say so.
"""

from __future__ import annotations

import importlib
import shutil
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest

from tests.support.harness import Live, live_service, make_settings
from tests.support.scripted import ScriptedModel, one_step_plan, openai_overrides

GENERATOR = "openapi-python-client"
PACKAGE = "agent_runtime_generated_client"


def _generator() -> str:
    found = shutil.which(GENERATOR) or shutil.which(GENERATOR, path=str(Path(sys.executable).parent))
    if found is None:
        pytest.skip(f"{GENERATOR} is not installed (it is in the dev dependency group: scripts/uv.sh sync)")
    return found


@asynccontextmanager
async def _live(tmp_path: Path) -> AsyncIterator[Live]:
    """The live service (entered in the test itself: its task group must close in the task that opened it)."""
    model = ScriptedModel(one_step_plan("example.echo"), {"s1": [("example.echo", {"text": "hi"})]})
    async with live_service(make_settings(tmp_path), openai_overrides(model.fake())) as service:
        yield service


@pytest.fixture
def generated(tmp_path: Path) -> Iterator[Path]:
    """Where the generated package goes; importable for the test, forgotten afterwards."""
    root = tmp_path / "generated"
    root.mkdir()
    sys.path.insert(0, str(root))
    try:
        yield root
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(PACKAGE + ".")]:
            del sys.modules[name]


async def _generate(live: Live, root: Path) -> Path:
    """Fetch the live document, run the generator on it; return the package directory."""
    generator = _generator()
    response = await live.client.get("/openapi.json")
    assert response.status_code == 200, response.text
    document = root / "openapi.json"
    document.write_bytes(response.content)
    config = root / "generator.yaml"
    config.write_text("post_hooks: []\n")  # no formatter runs on the output: the test needs none on PATH
    package = root / PACKAGE
    result = await anyio.run_process(
        [generator, "generate", "--path", str(document), "--output-path", str(package), "--meta", "none",
         "--config", str(config)],
        check=False,
    )  # fmt: skip
    output = (result.stdout + result.stderr).decode(errors="replace")
    assert result.returncode == 0, output
    assert (package / "client.py").exists(), output
    return package


def _endpoint(name: str) -> ModuleType:
    return importlib.import_module(f"{PACKAGE}.api.tasks.{name}")


async def _get_then_approve(live: Live, task_id: str) -> None:
    """GET the task and approve its plan version through the generated client; then see it run."""
    client_module = importlib.import_module(PACKAGE)
    models = importlib.import_module(f"{PACKAGE}.models")
    client: Any = client_module.Client(base_url=live.url, raise_on_unexpected_status=True)
    async with client:
        got = await _endpoint("get_task_v1_tasks_task_id_get").asyncio_detailed(task_id=task_id, client=client)
        assert got.status_code == 200, got.content
        task = got.parsed
        assert isinstance(task, models.TaskOut), task
        assert (task.id, task.status, task.current_plan_version) == (task_id, "awaiting_approval", 1)
        approve = _endpoint("approve_v1_tasks_task_id_approve_post")
        body = models.Approve(plan_version=task.current_plan_version)
        approved = await approve.asyncio_detailed(task_id=task_id, client=client, body=body)
        assert approved.status_code == 202, approved.content
        assert isinstance(approved.parsed, models.TaskOut)
        assert approved.parsed.approved_plan_version == 1
        repeated = await approve.asyncio_detailed(task_id=task_id, client=client, body=body)
        assert repeated.status_code == 200, repeated.content  # the documented "already approved" answer
    events = await live.wait_for(task_id, "task_completed")
    assert [e["type"] for e in events].count("task_approved") == 1


async def test_a_generated_client_reads_and_approves_a_task_of_the_live_service(
    tmp_path: Path, generated: Path
) -> None:
    async with _live(tmp_path) as live:
        await _generate(live, generated)
        task_id = (await live.submit("echo hi"))["id"]  # plain HTTP: see the next test for submit
        await live.wait_for(task_id, "approval_required")
        await _get_then_approve(live, task_id)


async def test_a_generated_client_submits_reads_and_approves_a_task(tmp_path: Path, generated: Path) -> None:
    async with _live(tmp_path) as live:
        package = await _generate(live, generated)
        made = sorted(p.name for p in (package / "api" / "tasks").glob("*.py"))
        if "submit_v1_tasks_post.py" in made:
            models = importlib.import_module(f"{PACKAGE}.models")
            client: Any = importlib.import_module(PACKAGE).Client(base_url=live.url, raise_on_unexpected_status=True)
            async with client:
                submitted = await _endpoint("submit_v1_tasks_post").asyncio_detailed(
                    client=client, body=models.SubmitTask(prompt="echo hi")
                )
                assert submitted.status_code == 202, submitted.content
                task_id = submitted.parsed.id
            await live.wait_for(task_id, "approval_required")
            await _get_then_approve(live, task_id)
    # Checked after the service stopped cleanly: the generator must not leave out the submit route.
    assert "submit_v1_tasks_post.py" in made, f"the generator left out POST /v1/tasks: {made}"
