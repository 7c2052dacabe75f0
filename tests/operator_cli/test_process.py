"""The installed ``agent-runtime`` command, as a separate process, against the live service; it loads
no part of the server stack."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import anyio

from tests.support.harness import live_service, make_settings

AGENT_RUNTIME = Path(sys.executable).parent / "agent-runtime"
SERVER_STACK = (
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "aiosqlite",
    "asyncpg",
    "openai",
    "anthropic",
    "mcp",
    "sse_starlette",
    "structlog",
    "prometheus_client",
)

PROBE = """\
import json, sys
from agent_runtime.cli import main
code = main(sys.argv[1:])
loaded = sorted({name.split(".")[0] for name in sys.modules} & set(json.loads(sys.stdin.read())))
print(json.dumps({"code": code, "server_stack": loaded}), file=sys.stderr)
"""


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("AGENT_RUNTIME_")}


async def test_the_agent_runtime_command_approves_and_watches_as_its_own_process(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        task = await live.submit("Add 2 and 3.")
        await live.wait_for(task["id"], "approval_required")
        with anyio.fail_after(60):
            approved = await anyio.run_process(
                [str(AGENT_RUNTIME), "tasks", "approve", task["id"], "--server", live.url], env=_env(), check=False
            )
            watched = await anyio.run_process(
                [str(AGENT_RUNTIME), "tasks", "watch", task["id"], "--json", "--server", live.url],
                env=_env(),
                check=False,
            )
    assert approved.returncode == 0, approved.stderr
    assert f"{task['id']} approved: status approved" in approved.stdout.decode()
    assert watched.returncode == 0, watched.stderr
    events = [json.loads(line) for line in watched.stdout.decode().splitlines()]
    assert events[-1]["type"] == "task_completed"


async def test_operator_commands_load_none_of_the_server_stack(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        task = await live.submit("Add 2 and 3.")
        for argv in (["tasks", "show", task["id"]], ["tasks", "watch", task["id"]], ["approvals"]):
            with anyio.fail_after(60):
                done = await anyio.run_process(
                    [sys.executable, "-c", PROBE, *argv, "--server", live.url],
                    input=json.dumps(SERVER_STACK).encode(),
                    env=_env(),
                    check=False,
                )
            report = json.loads(done.stderr.decode().splitlines()[-1])
            assert report["code"] in (0, 4), done.stderr
            assert report["server_stack"] == [], argv
