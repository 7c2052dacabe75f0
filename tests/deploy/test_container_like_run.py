"""The service run the way the image runs it, without Docker: a real process, a real task.

The command is the Dockerfile's ENTRYPOINT + CMD (minus the tini wrapper), with the Dockerfile's ENV,
from a folder laid out like the image's /app (what the runtime stage COPYs, plus ``data/``), and
only ``data/`` and a stand-in for /tmp writable:

the /app stand-in is made read-only with chmod and, as root (CI containers), the service runs
without the capabilities that bypass file modes (``setpriv``), so it can write only where a
non-root container user on a read-only root filesystem could; a snapshot of /app taken before the
run must still match after it.

Host and port are the only changes: 127.0.0.1 (tests never bind other interfaces) and a free port.
The flow: /healthz -> POST /v1/tasks -> awaiting_approval -> approve -> completed -> /metrics.

Status: end-to-end, so it needs the whole service (app, runner, offline test model, example MCP
server). Marked ``e2e``; deselect with ``-m "not e2e"``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx2
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.deploy_files import ROOT, Dockerfile, parse_dockerfile

pytestmark = pytest.mark.e2e

# The image's /app/.venv stand-in: this virtualenv (editable install) unless pointed at a
# non-editable one, e.g. built with the Dockerfile's `uv sync --frozen --no-dev --no-editable`.
VENV_BIN = Path(os.environ.get("AGENT_RUNTIME_TEST_VENV_BIN") or Path(sys.executable).parent)
START_TIMEOUT = 60.0
TASK_TIMEOUT = 90.0
STOP_TIMEOUT = 40.0
POLL_INTERVAL = 0.1

T = TypeVar("T")


@dataclass
class Service:
    process: subprocess.Popen[bytes]
    base_url: str
    app_dir: Path
    log: Path

    def logs(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-6000:]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _command(dockerfile: Dockerfile, port: int) -> list[str]:
    entrypoint = dockerfile.exec_form("ENTRYPOINT")
    argv = entrypoint[entrypoint.index("agent-runtime") :] + dockerfile.exec_form("CMD")
    argv[0] = str(VENV_BIN / "agent-runtime")
    argv[argv.index("--host") + 1] = "127.0.0.1"
    argv[argv.index("--port") + 1] = str(port)
    return argv


def _image_layout(dockerfile: Dockerfile, app_dir: Path) -> None:
    """Copy what the runtime stage COPYs from the build context into the /app stand-in."""
    final = dockerfile.instructions[-1].stage
    for copy in dockerfile.all("COPY", final):
        if copy.args.startswith("--from="):
            continue  # the virtualenv: the repository's .venv stands in for it
        *sources, dest = copy.args.split()
        for source in sources:
            src = ROOT / source
            target = app_dir / (dest if dest not in ("./", ".") else "") / (src.name if dest.endswith("/") else "")
            if src.is_dir():
                shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)
    (app_dir / "data").mkdir()


def _environment(dockerfile: Dockerfile, app_dir: Path, tmp_dir: Path) -> dict[str, str]:
    """The Dockerfile's ENV with /app/.venv, /app and /tmp mapped to their stand-ins."""
    keep = ("LANG", "LC_ALL", "SYSTEMROOT")
    env = {key: value for key, value in os.environ.items() if key in keep}
    env["PATH"] = os.environ.get("PATH", "/usr/bin:/bin")

    def mapped(value: str) -> str:
        value = value.replace("${PATH}", env["PATH"]).replace("$PATH", env["PATH"])
        value = re.sub(r"(?<![\w.])/app/\.venv/bin(?=$|[:/])", str(VENV_BIN), value)
        value = re.sub(r"(?<![\w.])/app(?=$|[:/])", str(app_dir), value)
        return re.sub(r"(?<![\w.])/tmp(?=$|[:/])", str(tmp_dir), value)

    for key, value in dockerfile.env().items():
        env[key] = mapped(value)
    env["TMPDIR"] = str(tmp_dir)
    # No provider keys: the service must pick the offline test model, as in a bare `docker run`.
    return env


def _snapshot(root: Path, skip: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``root`` except ``skip``, with size and mtime: catches creation and change."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in root.rglob("*")
        if skip not in p.parents and p != skip
    }


def _read_only_except(app_dir: Path, writable: list[Path], argv: list[str]) -> list[str]:
    """Make the /app stand-in read-only except ``writable``; return the argv that honours it.

    Root ignores permission bits, so as root the service runs without the capabilities that let it
    (``setpriv`` drops CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH): it can then write only where the
    mode bits allow, as a non-root container user on a read-only root filesystem can.
    """
    for path in [app_dir, *app_dir.rglob("*")]:
        if not any(path == w or w in path.parents for w in writable):
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    if os.geteuid() != 0:
        return argv
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("running as root without util-linux setpriv: cannot make the /app stand-in read-only")
    return [setpriv, "--bounding-set=-dac_override,-dac_read_search", "--", *argv]


def _wait_for(service: Service, what: str, timeout: float, probe: Callable[[], T | None]) -> T:
    """Poll ``probe`` until it returns a value, the process dies, or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if service.process.poll() is not None:
            pytest.fail(f"service exited ({service.process.returncode}) waiting for {what}:\n{service.logs()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}:\n{service.logs()}")
        time.sleep(POLL_INTERVAL)  # polling a separate process: there is nothing to await


@pytest.fixture
def service() -> Iterator[Service]:
    dockerfile = parse_dockerfile(ROOT / "Dockerfile")
    with tempfile.TemporaryDirectory(prefix="agent-runtime-image-") as base:
        base_dir = Path(base)
        app_dir, tmp_dir = base_dir / "app", base_dir / "tmp"
        app_dir.mkdir()
        tmp_dir.mkdir()
        _image_layout(dockerfile, app_dir)
        before = _snapshot(app_dir, app_dir / "data")
        port = _free_port()
        argv = _read_only_except(app_dir, [app_dir / "data"], _command(dockerfile, port))
        log = base_dir / "service.log"
        with log.open("wb") as log_file:
            process = subprocess.Popen(
                argv,
                cwd=app_dir,  # WORKDIR /app
                # One operator here: the development bootstrap key submits and approves.
                env={
                    **_environment(dockerfile, app_dir, tmp_dir),
                    "AGENT_RUNTIME_APPROVALS__ALLOW_SELF_APPROVAL": "true",
                },
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        running = Service(process, f"http://127.0.0.1:{port}", app_dir, log)
        try:
            yield running
            process.send_signal(signal.SIGTERM)
            try:
                code = process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                pytest.fail(f"service did not stop within {STOP_TIMEOUT}s of SIGTERM:\n{running.logs()}")
            # uvicorn re-raises the signal once shut down (exit status 143 under tini): still clean.
            assert code in (0, -signal.SIGTERM), f"exit code {code} after SIGTERM:\n{running.logs()}"
            assert "Application shutdown complete" in running.logs()
            assert _snapshot(app_dir, app_dir / "data") == before, "the service wrote outside /app/data"
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
            for path in [app_dir, *app_dir.rglob("*")]:
                path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _get_json(client: httpx2.Client, path: str) -> dict[str, Any] | None:
    try:
        response = client.get(path)
    except httpx2.TransportError:
        return None  # not listening yet
    if response.status_code != 200:
        return None
    body: dict[str, Any] = response.json()
    return body


def _task_in(client: httpx2.Client, task_id: str, status: str) -> Callable[[], dict[str, Any] | None]:
    terminal_failures = {"failed", "cancelled", "rejected"}

    def probe() -> dict[str, Any] | None:
        task = _get_json(client, f"/v1/tasks/{task_id}")
        if task is None:
            return None
        if task["status"] in terminal_failures and status not in terminal_failures:
            pytest.fail(f"task ended {task['status']} while waiting for {status}: {task}")
        return task if task["status"] == status else None

    return probe


def _metrics(text: str) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    series: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            series.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return series


def test_service_started_like_the_image_runs_a_task_through_approval(service: Service) -> None:
    with httpx2.Client(base_url=service.base_url, timeout=10.0, trust_env=False) as client:
        _wait_for(service, "/healthz", START_TIMEOUT, lambda: _get_json(client, "/healthz"))
        # SQLite migrates itself at start; the replica reports ready before taking traffic.
        _wait_for(service, "/readyz", START_TIMEOUT, lambda: _get_json(client, "/readyz"))

        # Development start with no key: one admin key, printed once on stdout (here: the log).
        key = next(line.strip() for line in service.logs().splitlines() if line.strip().startswith("ar_"))
        client.headers["Authorization"] = f"Bearer {key}"
        submitted = client.post("/v1/tasks", json={"prompt": "Write a note named hello saying hi, then read it back."})
        assert submitted.status_code == 202, submitted.text
        task_id = submitted.json()["id"]

        proposed = _wait_for(service, "awaiting_approval", TASK_TIMEOUT, _task_in(client, task_id, "awaiting_approval"))
        plan = proposed["plan"]
        assert plan["steps"], proposed

        approved = client.post(f"/v1/tasks/{task_id}/approve", json={"plan_version": plan["version"]})
        assert approved.status_code in (200, 202), approved.text

        done = _wait_for(service, "completed", TASK_TIMEOUT, _task_in(client, task_id, "completed"))
        assert all(step["status"] == "completed" for step in done["plan"]["steps"]), done

        scraped = client.get("/metrics")
        assert scraped.status_code == 200
        assert scraped.headers["content-type"].startswith("text/plain")
        metrics = _metrics(scraped.text)

    steps = len(done["plan"]["steps"])

    def total(name: str, **labels: str) -> float:
        return sum(
            value
            for key, value in metrics.get(name, {}).items()
            if all(dict(key).get(k) == v for k, v in labels.items())
        )

    # Every expectation is checked, so one run lists every series the service does not report yet.
    expectations = {
        "tasks{state=completed} == 1": total("agent_runtime_tasks", state="completed") == 1,
        "planning_duration_seconds_count >= 1": total("agent_runtime_planning_duration_seconds_count") >= 1,
        "execution_duration_seconds_count == 1": total("agent_runtime_execution_duration_seconds_count") == 1,
        f"step_duration_seconds_count == {steps}": total("agent_runtime_step_duration_seconds_count") == steps,
        "llm_calls_total{provider=offline} >= 2 (plan + execute)": (
            total("agent_runtime_llm_calls_total", provider="offline") >= 2
        ),
        "tool_calls_total{server=example} >= 1": total("agent_runtime_tool_calls_total", server="example") >= 1,
        "mcp_server_processes series exists": "agent_runtime_mcp_server_processes" in metrics,
    }
    missing = [name for name, ok in expectations.items() if not ok]
    assert not missing, f"unexpected /metrics values: {missing}\n{scraped.text}"
    assert (service.app_dir / "data" / "agent-runtime.db").is_file(), "the database belongs in /app/data"
