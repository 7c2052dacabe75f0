"""The README's Python client example runs as written (its own process) against the real service."""

from __future__ import annotations

import sys
from pathlib import Path

import anyio

from tests.support.harness import REPO, live_service, make_settings


def _example() -> str:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Python client", 1)[1]
    return section.split("```python\n", 1)[1].split("```", 1)[0]


async def test_the_readme_client_example_submits_approves_and_follows_the_task_to_its_result(tmp_path: Path) -> None:
    code = _example()
    assert "http://127.0.0.1:8080" in code and len(code.strip().splitlines()) <= 10
    async with live_service(make_settings(tmp_path)) as live:
        with anyio.fail_after(60):
            done = await anyio.run_process([sys.executable, "-c", code.replace("http://127.0.0.1:8080", live.url)])
    lines = done.stdout.decode().splitlines()
    assert lines[0].startswith("[offline-test] Write a note named hello")
    assert any(" task_approved " in line for line in lines)
    assert any(line.split(" ", 2)[1] == "task_completed" for line in lines if line[:1].isdigit())
    assert "'summary':" in lines[-1] and "'outputs':" in lines[-1]
