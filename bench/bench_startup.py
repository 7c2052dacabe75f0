"""``serve`` start → first ``/readyz`` 200, with the default registry (issue 16, item 5).

    .venv/bin/python -m bench.bench_startup [--runs 5] [--port 18731]

Each run starts ``.venv/bin/agent-runtime serve`` as a separate process with a temporary config
(the repository's ``config.yaml`` with the database and workspaces in a temporary directory, the
repository's ``tool_registry.yaml``) and polls ``GET /readyz`` every 10 ms until it answers 200.
``fresh``: a new SQLite file each run (start-up migrates it); ``restart``: the same file again
(the scale-up / restart case). Bytecode is as the environment has it (``uv sync`` compiles it).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil
import yaml

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench.stats import log, summary  # noqa: E402


def write_config(directory: Path) -> Path:
    config = yaml.safe_load((REPO / "config.yaml").read_text(encoding="utf-8"))
    config["database"]["url"] = f"sqlite+aiosqlite:///{directory / 'db.sqlite'}"
    config["tools"]["registry_path"] = str(REPO / "tool_registry.yaml")
    config["tools"]["workspace_root"] = str(directory / "workspaces")
    config["server"]["log_format"] = "json"
    path = directory / "config.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def cpu_seconds(pid: int) -> float:
    """User+system CPU of ``pid`` and its live descendants (the fork server, discovery's servers)."""
    total = 0.0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            times = proc.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def one_start(config: Path, port: int) -> tuple[float, float]:
    """(seconds to the first /readyz 200, CPU-seconds the service and its children used by then)."""
    binary = REPO / ".venv" / "bin" / "agent-runtime"
    started = time.perf_counter()
    proc = subprocess.Popen(
        [str(binary), "serve", "--port", str(port), "--config", str(config)],
        cwd=config.parent,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={k: v for k, v in os.environ.items() if k != "AGENT_RUNTIME_CONFIG"},
    )
    try:
        with httpx.Client(timeout=1.0) as client:
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"serve exited with {proc.returncode} before it was ready")
                try:
                    if client.get(f"http://127.0.0.1:{port}/readyz").status_code == 200:
                        return time.perf_counter() - started, cpu_seconds(proc.pid)
                except httpx.TransportError:
                    pass
                time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--port", type=int, default=18731)
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float]]] = {"fresh database": [], "restart": []}
    for n in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
            config = write_config(Path(tmp))
            results["fresh database"].append(one_start(config, args.port))
            results["restart"].append(one_start(config, args.port))
        (fw, fc), (rw, rc) = results["fresh database"][-1], results["restart"][-1]
        log(f"run {n + 1}: fresh {fw * 1000:.0f} ms ({fc:.2f} CPU-s), restart {rw * 1000:.0f} ms ({rc:.2f} CPU-s)")
    for name, values in results.items():
        s = summary([wall * 1000 for wall, _ in values])
        cpu = summary([c for _, c in values])
        print(
            f"{name}: n={s['n']:.0f} min {s['min']:.0f} ms, p50 {s['p50']:.0f} ms, max {s['max']:.0f} ms; "
            f"CPU-s at ready p50 {cpu['p50']:.2f}"
        )


if __name__ == "__main__":
    main()
