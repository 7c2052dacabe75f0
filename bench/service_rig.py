"""The rig for ``bench_service_load.py``: the fake LLM and the service, each its own process, and a sampler.

* :func:`fake_llm_main` serves the scripted test model (``ScriptedModel(...).fake()``) on 127.0.0.1
  with uvicorn, every reply held ``--delay`` seconds with the fake's own per-reply
  ``Reply.delay_seconds``. The fake waits out a delay in ``asyncio.to_thread``, whose default
  executor has ``min(32, cores + 4)`` threads: 6 here, i.e. at most 6 delayed replies at once (20
  replies/s at 300 ms). This process therefore gives its loop a default executor of 512 threads, so
  the fake is never the queue under test. It prints ``{"port": ...}`` once it listens.
* :class:`Service` runs ``agent-runtime serve`` (optionally under ``python -m cProfile``) in its own
  process group with the config :func:`write_service_config` writes: SQLite, the given registry,
  optionally a policy file, the OpenAI (or Anthropic) provider pointed at the fake LLM.
* :class:`Sampler` is a thread that samples, every ``interval`` seconds, the RSS of the service
  process and of its children (summed), how many children are alive, and the CPU each process used
  (a child born during the run from its birth to the last sample that saw it). The
  children's RSS counts the pages forked children share with their fork server once per child; their
  PSS (proportional set size, every 10th sample) splits shared pages between the processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import psutil
import uvicorn
import yaml

REPO = Path(__file__).resolve().parents[1]
AGENT_RUNTIME = Path(sys.executable).parent / "agent-runtime"
TIME_SERVER = REPO / ".tools" / "mcp-time-venv" / "bin" / "mcp-server-time"
TOOL = "time.get_current_time"


# -- the fake LLM, in its own process ---------------------------------------------------------------


def fake_llm_main(argv: list[str]) -> None:
    """``python -m bench.service_rig --delay 0.3``: serve the bench model until killed."""
    from agent_runtime.testing import FakeLLM, RecordedRequest, Reply, ScriptedModel, one_step_plan

    parser = argparse.ArgumentParser()
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args(argv)
    model = ScriptedModel(
        one_step_plan(TOOL), {"s1": [(TOOL, {"timezone": "UTC"})]}, step_text="ok", summary_text="done", text_deltas=1
    )

    def responder(request: RecordedRequest) -> Reply:
        return dataclasses.replace(model(request), delay_seconds=args.delay)

    fake = FakeLLM(responder=responder)
    fake.requests = _Discard()  # a 1,000-task run is ~4,000 requests: do not keep them

    async def serve() -> None:
        asyncio.get_running_loop().set_default_executor(ThreadPoolExecutor(max_workers=512))
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        config = uvicorn.Config(fake.app, lifespan="off", log_config=None, log_level="warning", access_log=False)
        server = uvicorn.Server(config)
        port = sock.getsockname()[1]
        serving = asyncio.ensure_future(server.serve(sockets=[sock]))
        while not server.started:  # noqa: ASYNC110 (uvicorn has no start event)
            await asyncio.sleep(0.01)
        print(json.dumps({"port": port}), flush=True)
        await serving

    import uvloop

    uvloop.run(serve())


class _Discard(list[Any]):
    def append(self, item: Any) -> None:
        pass


class FakeLLMProcess:
    def __init__(self, delay: float) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.service_rig", "--delay", str(delay)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("fake LLM process did not start")
        self.root = f"http://127.0.0.1:{json.loads(line)['port']}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


# -- the service, in its own process ----------------------------------------------------------------


def registry_text(*, scope: str = "task", prewarm: int = 0, instances: int = 1) -> str:
    entry: dict[str, Any] = {
        "id": "time",
        "type": "local_stdio",
        "config": {"command": str(TIME_SERVER), "args": ["--local-timezone", "UTC"]},
        "prewarm": prewarm,
    }
    if scope == "shared":
        entry.update(scope="shared", instances=instances)
    return yaml.safe_dump({"servers": [entry]})


AUTO_APPROVE_POLICY = {
    "plan_rules": [
        {
            "id": "bench-auto",
            "description": "every plan runs at once (a high-throughput deployment)",
            "match": {},
            "decision": "auto_approve",
            "allow_risky": True,  # mcp-server-time sends no openWorldHint: it counts as open-world
        }
    ]
}


def write_service_config(
    tmp: Path, registry: str, *, auto_approve: bool, provider: str = "openai", **sections: dict[str, Any]
) -> Path:
    (tmp / "tool_registry.yaml").write_text(registry)
    config: dict[str, Any] = {
        "server": {"log_format": "json", "log_level": "warning", "shutdown_grace_seconds": 5},
        "database": {"url": f"sqlite+aiosqlite:///{tmp / 'bench.sqlite'}"},
        "tools": {
            "registry_path": str(tmp / "tool_registry.yaml"),
            "workspace_root": str(tmp / "workspaces"),
            "connect_timeout_seconds": 120,
        },
        "llm": {"planner": {"provider": provider}, "executor": {"provider": provider}},
        "auth": {"mode": "disabled"},
    }
    if auto_approve:
        (tmp / "policy.yaml").write_text(yaml.safe_dump(AUTO_APPROVE_POLICY))
        config["policy"] = {"path": str(tmp / "policy.yaml")}
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class Service:
    """``agent-runtime serve`` in its own process group; ``stop()`` is SIGINT (graceful), then SIGKILL."""

    def __init__(self, config: Path, llm_root: str, log_path: Path, *, profile: Path | None = None) -> None:
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        sock.close()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "AGENT_RUNTIME_"))}
        env.update(OPENAI_API_KEY="sk-test-not-a-real-key", OPENAI_BASE_URL=f"{llm_root}/v1")
        env.update(ANTHROPIC_API_KEY="sk-test-not-a-real-key", ANTHROPIC_BASE_URL=llm_root)
        serve = ["serve", "--config", str(config), "--port", str(self.port)]
        if profile is None:
            command = [str(AGENT_RUNTIME), *serve]
        else:
            command = [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "agent_runtime", *serve]
        self.log_path = log_path
        self.config = config
        self.proc = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            start_new_session=True,
        )  # fmt: skip
        assert self.proc.stderr is not None
        threading.Thread(target=self._pump, args=(self.proc.stderr,), daemon=True).start()

    def _pump(self, stream: IO[str]) -> None:
        with self.log_path.open("a") as out, stream:
            for line in stream:
                out.write(line)

    def wait_ready(self, timeout: float = 120) -> None:
        """Until ``GET /readyz`` answers 200 (the log level is warning: no "running on" line)."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=5) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"service did not start; log: {self.log_path.read_text()[-3000:]}")

    def stop(self, grace: float = 30) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its MCP servers, if any are left
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)


# -- sampling RSS and CPU -----------------------------------------------------------------------------


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


class Sampler(threading.Thread):
    """Peak RSS of a process and of its children; CPU seconds per process between start and stop."""

    def __init__(self, pid: int, interval: float = 0.1, others: dict[str, int] | None = None) -> None:
        super().__init__(daemon=True)
        self.proc = psutil.Process(pid)
        self.interval = interval
        self.others = {name: psutil.Process(p) for name, p in (others or {}).items()}
        self.peak_rss = 0
        self.peak_children_rss = 0
        self.peak_children = 0
        self.peak_children_pss = 0
        self._samples = 0
        self._child_cpu: dict[int, float] = {}  # pid -> CPU seconds when last seen
        self._child_cpu0: dict[int, float] = {}  # children alive at the start: their CPU then
        for child in self.proc.children(recursive=True):
            with contextlib.suppress(psutil.Error):
                self._child_cpu0[child.pid] = _cpu(child)
        self._halt = threading.Event()
        self._cpu0 = _cpu(self.proc)
        self._others0 = {name: _cpu(p) for name, p in self.others.items()}
        self._machine0 = psutil.cpu_times()
        self._t0 = time.perf_counter()
        self.result: dict[str, Any] = {}

    def run(self) -> None:
        while not self._halt.is_set():
            self._sample()
            self._halt.wait(self.interval)

    def _sample(self) -> None:
        try:
            self.peak_rss = max(self.peak_rss, self.proc.memory_info().rss)
            children = self.proc.children(recursive=True)
        except psutil.Error:
            return
        rss = pss = 0
        full = self._samples % 10 == 0  # PSS reads smaps: every 10th sample only
        self._samples += 1
        for child in children:
            try:
                rss += child.memory_info().rss
                if full:
                    pss += child.memory_full_info().pss
                cpu = _cpu(child)
            except psutil.Error:
                continue
            self._child_cpu[child.pid] = cpu
        self.peak_children_rss = max(self.peak_children_rss, rss)
        self.peak_children = max(self.peak_children, len(children))
        self.peak_children_pss = max(self.peak_children_pss, pss)

    def finish(self) -> dict[str, Any]:
        self._halt.set()
        self.join()
        self._sample()
        wall = time.perf_counter() - self._t0
        machine = psutil.cpu_times()
        busy = (sum(machine) - machine.idle - machine.iowait) - (
            sum(self._machine0) - self._machine0.idle - self._machine0.iowait
        )
        # A child born during the run counts from its birth (a process's CPU times start at 0) to the
        # last sample that saw it (its last < interval is missed, and so is a child that lived
        # between two samples); one alive at the start counts from then.
        children_cpu = sum(cpu - self._child_cpu0.get(pid, 0.0) for pid, cpu in self._child_cpu.items())
        self.result = {
            "wall_s": wall,
            "peak_rss_mb": self.peak_rss / 2**20,
            "peak_children_rss_mb": self.peak_children_rss / 2**20,  # forked children share pages: see PSS
            "peak_children_pss_mb": self.peak_children_pss / 2**20,
            "peak_children": self.peak_children,
            "cpu_s": {
                "service": _cpu(self.proc) - self._cpu0,
                "service_children_seen": children_cpu,
                **{name: _cpu(p) - self._others0[name] for name, p in self.others.items()},
                "machine_busy": busy,
            },
            "machine_busy_cores": busy / wall,
        }
        return self.result


if __name__ == "__main__":
    fake_llm_main(sys.argv[1:])


# -- profiling the service with py-spy (optional) -------------------------------------------------------


class PySpy:
    """``py-spy record`` attached to a running process (non-blocking sampling), stopped with SIGINT."""

    def __init__(self, executable: str, pid: int, out: Path, rate: int = 200) -> None:
        self.out = out
        command = [executable, "record", "-p", str(pid), "-r", str(rate), "-f", "raw", "-o", str(out), "--nonblocking"]
        self.proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.5)  # attached

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def _frame(text: str) -> str:
    """``function (/path/to/file.py:123)`` -> ``function (file.py)``: one name per function."""
    name, _, where = text.partition(" (")
    return f"{name} ({where.split(':')[0].rsplit('/', 1)[-1]})" if where else name


# Where a sample's time belongs: the first bucket (in this order) with a frame in the stack.
BUCKETS = (
    ("bench's /metrics polls", ("metrics (ops.py)",)),
    ("LLM calls (OpenAI SDK + httpx2)", ("OpenAIClient.generate (", "OpenAIClient.generate_structured (")),
    ("MCP tool calls", ("TaskTools.call (",)),
    ("MCP server open/close", ("ServerConnection._open (", "ServerConnection._owner (", "TaskTools.__aexit__ (")),
    ("workspaces (create/remove)", ("Workspaces.",)),
    ("store (SQLite, journal)", ("SqliteStore.", "StoreJournal.", "Outbox.")),
    ("HTTP API (FastAPI, uvicorn)", ("RequestResponseCycle.run_asgi (",)),
    ("webhooks loop", ("WebhookDeliverer.",)),
    ("planner (besides LLM, store)", ("PlannerAgent.",)),
    ("executor (besides LLM, tools, store)", ("ExecutorAgent.",)),
    ("runner/jobs (rest)", ("Runner._", "TaskJobs.")),
)


def _bucket(frames: list[str]) -> str:
    for name, markers in BUCKETS:
        if any(frame.startswith(marker) for frame in frames for marker in markers):
            return name
    return "other (event loop, GC, threads)"


def summarize_stacks(path: Path, limit: int = 25) -> str:
    """Top functions of a py-spy raw (collapsed) profile: by own samples and by inclusive samples."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    buckets: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [_frame(f) for f in stack.split(";") if not f.startswith(("process ", "thread "))]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        buckets[_bucket(frames)] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples", "", "by part (first match in the stack, in BUCKETS order):"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in buckets.most_common()]
    lines += ["", "own (self) samples:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in own.most_common(limit)]
    lines += ["", "inclusive samples:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(limit * 2)]
    return "\n".join(lines) + "\n"
