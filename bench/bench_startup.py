"""``serve`` start → first ``/readyz`` 200, with the default registry (issue 16, item 5).

    .venv/bin/python -m bench.bench_startup [--runs 5] [--port 18731]

Each run starts ``.venv/bin/agent-runtime serve`` as a separate process with a temporary config
(the repository's ``config.yaml`` with the database and workspaces in a temporary directory, the
repository's ``tool_registry.yaml``) and polls ``GET /readyz`` every 10 ms until it answers 200.

* ``cold``: a new SQLite file (start-up migrates it) and so no stored tool catalogue: ready does
  not wait for discovery; "tools known" is when the first discovery's outcome is in the database
  (``tool_catalogue``), i.e. when the runner starts claiming.
* ``warm``: the same file again (restart / scale-up), the catalogue stored by the cold run: served
  at once, refreshed in the background.

Bytecode is as the environment has it (``./scripts/serve`` compiles it; run
``python -m compileall -q src`` for the editable project when ``PYTHONDONTWRITEBYTECODE`` is set).
"""

from __future__ import annotations

import argparse
import os
import signal
import sqlite3
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


def catalogue_rows(database: Path) -> int:
    """Rows in the stored tool catalogue (0 before the table exists)."""
    try:
        with sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=1) as conn:
            return int(conn.execute("SELECT count(*) FROM tool_catalogue").fetchone()[0])
    except sqlite3.Error:
        return 0


def one_start(config: Path, port: int, *, wait_catalogue: bool = True) -> tuple[float, float, float | None]:
    """(seconds to the first /readyz 200, CPU-seconds the service and its children used by then,
    seconds until the tool catalogue is stored when it was empty at start, else None)."""
    database = config.parent / "db.sqlite"
    stored_before = catalogue_rows(database) if database.exists() else 0
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
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.01)
        ready, cpu = time.perf_counter() - started, cpu_seconds(proc.pid)
        known = None
        if wait_catalogue and not stored_before:  # wait for the first discovery to be stored (the warm run needs it)
            while not catalogue_rows(database):
                if proc.poll() is not None or time.perf_counter() - started > 60:
                    raise RuntimeError("the tool catalogue was not stored within 60 s")
                time.sleep(0.01)
            known = time.perf_counter() - started
        return ready, cpu, known
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
    parser.add_argument(
        "--no-catalogue", action="store_true", help="code without a stored catalogue (a 'before' run via PYTHONPATH)"
    )
    args = parser.parse_args()
    results: dict[str, list[tuple[float, float, float | None]]] = {"cold": [], "warm": []}
    for n in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="bench-startup-") as tmp:
            config = write_config(Path(tmp))
            wait = not args.no_catalogue
            results["cold"].append(one_start(config, args.port, wait_catalogue=wait))
            results["warm"].append(one_start(config, args.port, wait_catalogue=wait))
        (cw, cc, ck), (ww, wc, _) = results["cold"][-1], results["warm"][-1]
        log(
            f"run {n + 1}: cold {cw * 1000:.0f} ms ({cc:.2f} CPU-s; tools known at {(ck or 0) * 1000:.0f} ms), "
            f"warm {ww * 1000:.0f} ms ({wc:.2f} CPU-s)"
        )
    for name, values in results.items():
        s = summary([wall * 1000 for wall, _, _ in values])
        cpu = summary([c for _, c, _ in values])
        line = (
            f"{name}: n={s['n']:.0f} ready min {s['min']:.0f} ms, p50 {s['p50']:.0f} ms, max {s['max']:.0f} ms; "
            f"CPU-s at ready p50 {cpu['p50']:.2f}"
        )
        known = [k * 1000 for _, _, k in values if k is not None]
        if known:
            line += f"; tools known p50 {summary(known)['p50']:.0f} ms"
        print(line)


if __name__ == "__main__":
    main()
