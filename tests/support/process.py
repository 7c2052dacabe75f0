"""Real service processes for end-to-end tests: start, wait until listening, SIGKILL, SIGTERM, SIGSTOP.

Readiness is detected from the service's own log line (uvicorn's "running on"), read by a thread
that also keeps the pipe drained and copies everything to a log file for post-mortems.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

import yaml

from tests.support.harness import REPO, free_port

AGENT_RUNTIME = Path(sys.executable).parent / "agent-runtime"


def write_config(tmp: Path, *, database_url: str, registry: Path, **sections: Any) -> Path:
    config: dict[str, Any] = {
        "server": {"log_format": "json", "shutdown_grace_seconds": 5, "sse_ping_seconds": 2},
        "database": {"url": database_url},
        "tools": {"registry_path": str(registry), "workspace_root": str(tmp / "workspaces")},
        "runner": {"lease_seconds": 2, "heartbeat_seconds": 0.5, "safety_poll_seconds": 0.5},
        "llm": {"planner": {"provider": "openai"}, "executor": {"provider": "openai"}},
        "auth": {"mode": "disabled"},  # tests that need authentication pass auth={...}
    }
    for key, value in sections.items():
        config[key] = {**config.get(key, {}), **value}
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


class ServiceProcess:
    def __init__(self, config: Path, *, llm_root: str | None, log_path: Path, port: int | None = None) -> None:
        self.config = config
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self.llm_root = llm_root
        self.proc: subprocess.Popen[str] | None = None
        self._ready = threading.Event()
        self._exited = threading.Event()
        self._expected: dict[str, threading.Event] = {}

    def start(self, timeout: float = 60) -> ServiceProcess:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "ANTHROPIC_", "AGENT_RUNTIME_"))}
        if self.llm_root is not None:
            env.update(OPENAI_API_KEY="sk-test-not-a-real-key", OPENAI_BASE_URL=f"{self.llm_root}/v1")
        self._ready = threading.Event()  # fresh per start: the previous run's reader may still be finishing
        self._exited = threading.Event()
        self.proc = subprocess.Popen(
            [str(AGENT_RUNTIME), "serve", "--config", str(self.config), "--port", str(self.port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, like a container: kill -9 takes its children too
        )
        assert self.proc.stderr is not None
        threading.Thread(target=self._pump, args=(self.proc.stderr, self._ready, self._exited), daemon=True).start()
        if not self._ready.wait(timeout) or self._exited.is_set():
            self.stop()
            raise AssertionError(f"service did not start; log: {self.log_path.read_text()[-3000:]}")
        return self

    def _pump(self, stream: IO[str], ready: threading.Event, exited: threading.Event) -> None:
        with self.log_path.open("a") as out, stream:
            for line in stream:
                out.write(line)
                out.flush()
                if "running on http" in line.lower():
                    ready.set()
                for text, seen in list(self._expected.items()):
                    if text in line:
                        seen.set()
        exited.set()
        ready.set()

    def expect(self, text: str) -> threading.Event:
        """An event set when a log line containing ``text`` appears from now on."""
        return self._expected.setdefault(text, threading.Event())

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> None:
        """SIGKILL the whole process group (the service and its MCP servers), like a crashed container."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
