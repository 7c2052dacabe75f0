"""Artifacts through the public API: a task's ``out/`` files are kept, listed, downloadable, limited
and removed by retention; the copying rules (links, names, sizes) on a real directory."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from agent_runtime.client import AsyncClient, NotFound
from agent_runtime.runtime import prune
from agent_runtime.services.artifacts import ArtifactStore
from agent_runtime.settings import ArtifactSettings
from agent_runtime.testing import ScriptedModel, openai_overrides
from tests.operator_cli.cli_runner import CLI
from tests.support.harness import REPO, Live, live_service, make_settings, write_registry

FS_SERVER = REPO / ".tools" / "node" / "node_modules" / ".bin" / "mcp-server-filesystem"
needs_fs = pytest.mark.skipif(not FS_SERVER.exists(), reason="run scripts/install-test-servers.sh")
REPORT = "# Report\n\nAll good.\n"
LIMITS = {"max_file_bytes": 64, "max_task_bytes": 4096}


def _files_registry(tmp: Path) -> Path:
    extra = (
        "  - id: files\n    type: local_stdio\n    config:\n"
        f"      command: '{FS_SERVER}'\n      args: ['${{WORKSPACE}}']\n"
    )
    return write_registry(tmp, extra=extra)


def _model() -> ScriptedModel:
    """One step that writes a report and a file over the per-file limit into out/ (the third-party
    filesystem server, rooted in the workspace), and a note outside out/ (not an artifact)."""
    tools = ["files.create_directory", "files.write_file"]
    plan = {
        "summary": "write a report",
        "steps": [{"id": "s1", "title": "write", "instruction": "write the report", "tools": tools, "depends_on": []}],
    }
    calls = [
        ("files.create_directory", {"path": "out"}),
        ("files.write_file", {"path": "out/report.md", "content": REPORT}),
        ("files.write_file", {"path": "out/big.txt", "content": "x" * 100}),
        ("files.write_file", {"path": "scratch.txt", "content": "not an artifact"}),
    ]
    return ScriptedModel(plan, {"s1": calls})


async def _run(live: Live) -> tuple[str, dict[str, Any]]:
    task_id = (await live.submit("write a report to out/report.md"))["id"]
    await live.wait_for(task_id, "approval_required")
    assert (await live.approve(task_id, 1)).status_code == 202
    await live.wait_for(task_id, "task_completed")
    return task_id, await live.task(task_id)


@needs_fs
async def test_files_a_task_writes_under_out_are_kept_listed_and_downloadable(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, registry=_files_registry(tmp_path), artifacts=LIMITS)
    async with live_service(settings, openai_overrides(_model().fake())) as live:
        task_id, task = await _run(live)
        listing = await live.client.get(f"/v1/tasks/{task_id}/artifacts")
        download = await live.client.get(f"/v1/tasks/{task_id}/artifacts/report.md")
        missing = await live.client.get(f"/v1/tasks/{task_id}/artifacts/scratch.txt")
        skipped = await live.client.get(f"/v1/tasks/{task_id}/artifacts/big.txt")
        traversal = await live.client.get(f"/v1/tasks/{task_id}/artifacts/..%2Fdb.sqlite")

    digest = hashlib.sha256(REPORT.encode()).hexdigest()
    report = {"name": "report.md", "size": len(REPORT), "sha256": digest, "media_type": "text/markdown"}
    big_reason = "larger than artifacts.max_file_bytes (64 bytes)"
    assert task["result"]["artifacts"] == [report]
    assert task["result"]["artifacts_skipped"] == [{"name": "big.txt", "reason": big_reason}]
    assert listing.status_code == 200
    assert listing.json() == {
        "items": [{**report, "url": f"/v1/tasks/{task_id}/artifacts/report.md"}],
        "skipped": [{"name": "big.txt", "reason": big_reason}],
    }
    assert download.status_code == 200 and download.text == REPORT
    assert download.headers["content-type"].startswith("text/markdown")
    assert download.headers["content-disposition"] == 'attachment; filename="report.md"'
    assert download.headers["etag"] == f'"{digest}"'
    for response in (missing, skipped):
        assert response.status_code == 404 and response.json()["error"]["details"] == {"field": "name"}
    assert traversal.status_code in (404, 422)  # never the database file
    # The workspace is gone; the artifact stays, and only the kept one.
    assert not (tmp_path / "workspaces" / task_id).exists()
    assert [p.name for p in (tmp_path / "data" / "artifacts" / task_id).iterdir()] == ["report.md"]


@needs_fs
async def test_retention_removes_a_pruned_tasks_artifacts(tmp_path: Path) -> None:
    registry = _files_registry(tmp_path)
    async with live_service(make_settings(tmp_path, registry=registry), openai_overrides(_model().fake())) as live:
        task_id, _ = await _run(live)
    kept = tmp_path / "data" / "artifacts" / task_id
    assert (kept / "report.md").read_text() == REPORT
    unrelated = tmp_path / "data" / "artifacts" / "not-a-task"
    unrelated.mkdir()

    async with live_service(make_settings(tmp_path, registry=registry)) as live:
        assert await prune(live.runtime, max_age_days=1e-9) == (1, 1)  # what the housekeeping loop runs
        gone = await live.client.get(f"/v1/tasks/{task_id}/artifacts")
    assert gone.status_code == 404 and not kept.exists()
    assert unrelated.is_dir()  # only directories named like a task are the sweep's


def _store(tmp_path: Path, **limits: int) -> ArtifactStore:
    return ArtifactStore(ArtifactSettings(root=tmp_path / "kept", **limits))


async def test_links_leading_out_of_out_odd_names_and_folders_are_skipped_with_reasons(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    out = workspace / "out"
    out.mkdir(parents=True)
    secret = tmp_path / "secret.txt"
    secret.write_text("do not publish")
    (out / "data.csv").write_text("a,b\n1,2\n")
    os.symlink(secret, out / "leak.txt")
    os.symlink(out / "data.csv", out / "alias.csv")  # a link inside out/ is fine
    (out / "sub").mkdir()
    (out / "-rf").write_text("x")
    os.mkfifo(out / "pipe")

    result = await _store(tmp_path).collect("task_" + "a" * 24, workspace)

    assert [a["name"] for a in result["artifacts"]] == ["alias.csv", "data.csv"]
    assert {a["media_type"] for a in result["artifacts"]} == {"text/csv"}
    reasons = {s["name"]: s["reason"] for s in result["artifacts_skipped"]}
    assert reasons == {
        "-rf": "not a plain file name (letters, digits, '.', '_', '-'; at most 128 characters)",
        "leak.txt": "a symbolic link to a file outside out/",
        "pipe": "not a regular file (subdirectories and special files are not collected)",
        "sub": "not a regular file (subdirectories and special files are not collected)",
    }
    assert sorted(p.name for p in (tmp_path / "kept" / ("task_" + "a" * 24)).iterdir()) == ["alias.csv", "data.csv"]


async def test_the_task_limit_keeps_files_in_name_order_until_the_next_would_not_fit(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    (workspace / "out").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "c.txt"):
        (workspace / "out" / name).write_text("y" * 40)
    result = await _store(tmp_path, max_file_bytes=50, max_task_bytes=100).collect("task_" + "b" * 24, workspace)
    assert [a["name"] for a in result["artifacts"]] == ["a.txt", "b.txt"]
    assert result["artifacts_skipped"] == [
        {"name": "c.txt", "reason": "would take the task's artifacts past artifacts.max_task_bytes (100 bytes; 80 "
         "already kept)"}
    ]  # fmt: skip


async def test_an_out_folder_that_is_a_link_keeps_nothing(tmp_path: Path) -> None:
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "passwd").write_text("root:x:0:0")
    os.symlink(tmp_path / "elsewhere", workspace / "out")
    result = await _store(tmp_path).collect("task_" + "c" * 24, workspace)
    assert result["artifacts"] == []
    assert result["artifacts_skipped"][0]["name"] == "out"
    assert not (tmp_path / "kept").exists()


async def test_a_task_without_an_out_folder_has_an_empty_list(tmp_path: Path) -> None:
    (tmp_path / "ws").mkdir()
    assert await _store(tmp_path).collect("task_" + "d" * 24, tmp_path / "ws") == {"artifacts": []}


@needs_fs
async def test_the_client_and_the_cli_list_and_download_a_tasks_artifacts(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, registry=_files_registry(tmp_path), artifacts=LIMITS)
    async with live_service(settings, openai_overrides(_model().fake())) as live:
        task_id, _task = await _run(live)
        async with AsyncClient(live.url) as client:
            listing = await client.artifacts(task_id)
            content = await client.download_artifact(task_id, "report.md")
            with pytest.raises(NotFound) as missing:
                await client.download_artifact(task_id, "scratch.txt")
        cli = CLI(live.url)
        listed = await cli("tasks", "artifacts", task_id)
        target = tmp_path / "saved.md"
        saved = await cli("tasks", "download", task_id, "report.md", "-o", str(target))
        again = await cli("tasks", "download", task_id, "report.md", "-o", str(target))
        piped = await cli("tasks", "download", task_id, "report.md", "-o", "-")
        as_json = await cli("tasks", "artifacts", task_id, "--json")

    assert [(a.name, a.size, a.media_type) for a in listing.items] == [("report.md", len(REPORT), "text/markdown")]
    assert [s.name for s in listing.skipped] == ["big.txt"]
    assert content == REPORT.encode()
    assert "has no artifact 'scratch.txt'" in missing.value.message
    assert listed.code == 0 and "report.md" in listed.out and "not kept: big.txt" in listed.err
    assert saved.code == 0 and target.read_text() == REPORT
    assert again.code == 2 and "exists; pass --force" in again.err
    assert piped.code == 0 and piped.out == REPORT
    assert as_json.json()["items"][0]["sha256"] == hashlib.sha256(REPORT.encode()).hexdigest()
