"""The fork server: run by a Python MCP server's *own* interpreter, it forks one child per instance.

Started by :mod:`agent_runtime.tools.forkserver` as ``<server's python> fork_parent.py <spec>``. It
imports the server's modules and nothing more (no server code runs, no thread, no event loop), tells
the service it is ready, then waits on its control socket (a ``SOCK_SEQPACKET`` Unix socket at the
fd named in the spec). Each ``spawn`` request carries the child's stdin, stdout and stderr as file
descriptors (``SCM_RIGHTS``), its environment, working directory and ``argv``; the fork server forks,
and the child starts a new session (so a new process group), puts those descriptors on 0/1/2,
replaces its environment, changes directory and runs the entry point. A child is never reused.

The fork server reports each child's pid when it is forked and its exit status when it ends. When
the control socket closes (the service stopped, or died), it gives its remaining children two
seconds to exit, kills their process groups and exits itself.

This file must run under any Python 3.9+ without the service installed: standard library only.
"""

from __future__ import annotations

import ast
import atexit
import gc
import importlib
import importlib.util
import json
import os
import runpy
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

Spec = dict[str, Any]
Runner = Callable[[], Any]

MAX_MESSAGE = 1 << 20
STOP_GRACE_SECONDS = 2.0


def top_level_imports(path: str) -> list[str]:
    """Absolute modules imported at the top level of a source file (parsed, never executed)."""
    with open(path, "rb") as source:
        tree = ast.parse(source.read(), filename=path)
    names: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names if alias.name != "*")
    return names


def preload(spec: Spec) -> Runner:
    """Import what the entry point needs; return the callable that runs it in a child."""
    kind = spec["kind"]
    sys.path[0] = spec["path0"]  # as the interpreter would set it for this entry point
    if kind == "callable":
        target: Any = importlib.import_module(spec["module"])
        for part in spec["attr"].split("."):
            target = getattr(target, part)
        function: Runner = target
        return function
    if kind == "module":
        found = importlib.util.find_spec(spec["module"])
        if found is None or not found.origin:
            raise ImportError(f"no module named {spec['module']!r}")
        modules = top_level_imports(found.origin)

        def run() -> Any:
            sys.path[0] = os.getcwd()  # "python -m" puts the working directory first
            return runpy.run_module(spec["module"], run_name="__main__", alter_sys=True)

    else:  # a script file
        modules = top_level_imports(spec["script"])

        def run() -> Any:
            return runpy.run_path(spec["script"], run_name="__main__")

    for name in modules:
        try:
            importlib.import_module(name)
        except Exception:  # not a module (an attribute), or broken: the child will see it
            continue
    return run


def send(ctl: socket.socket, message: dict[str, Any]) -> None:
    ctl.sendall(json.dumps(message).encode("utf-8"))


def exit_code(value: object) -> int:
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    print(value, file=sys.stderr)
    return 1


def run_child(ctl: socket.socket, wakeup: tuple[int, int], request: Spec, fds: list[int], run: Runner) -> None:
    """In the forked child: become the server instance described by ``request``; never returns."""
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        ctl.close()
        for fd in wakeup:
            os.close(fd)
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = list(request["argv"])
        code = exit_code(run())
    except SystemExit as exc:
        code = exit_code(exc.code)
    except BaseException:  # the child's top level: report, then exit
        traceback.print_exc()
        code = 1
    finally:
        try:
            atexit._run_exitfuncs()
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def reap(ctl: socket.socket, children: set[int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        children.discard(pid)
        send(ctl, {"op": "exited", "pid": pid, "status": os.waitstatus_to_exitcode(status)})


def stop_children(children: set[int]) -> None:
    for signum in (signal.SIGTERM, signal.SIGKILL):
        for pid in list(children):
            try:
                os.killpg(pid, signum)
            except OSError:
                pass
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while children and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                children.clear()
                break
            if pid:
                children.discard(pid)
            else:
                time.sleep(0.02)


def serve(ctl: socket.socket, run: Runner) -> set[int]:
    children: set[int] = set()
    wakeup = os.pipe()
    for fd in wakeup:
        os.set_blocking(fd, False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)  # a handler, so the wakeup fd is written
    signal.set_wakeup_fd(wakeup[1])
    try:
        while True:
            readable, _, _ = select.select([ctl.fileno(), wakeup[0]], [], [])
            if wakeup[0] in readable:
                while True:
                    try:
                        if not os.read(wakeup[0], 512):
                            break
                    except BlockingIOError:
                        break
                reap(ctl, children)
            if ctl.fileno() not in readable:
                continue
            data, fds, _, _ = socket.recv_fds(ctl, MAX_MESSAGE, 3)
            if not data:
                return children  # the service closed the socket (or died)
            request = json.loads(data)
            try:
                if len(fds) != 3:
                    raise ValueError(f"expected 3 descriptors, got {len(fds)}")
                sys.stdout.flush()
                sys.stderr.flush()
                pid = os.fork()
                if pid == 0:
                    run_child(ctl, wakeup, request, fds, run)
                children.add(pid)
                send(ctl, {"op": "spawned", "id": request["id"], "pid": pid})
            except OSError as exc:
                send(ctl, {"op": "spawned", "id": request["id"], "error": str(exc)})
            finally:
                for fd in fds:
                    os.close(fd)
    finally:
        signal.set_wakeup_fd(-1)


def main() -> int:
    spec = json.loads(sys.argv[1])
    ctl = socket.socket(fileno=int(spec["control_fd"]))
    try:
        run = preload(spec)
    except BaseException as exc:  # reported to the service, which spawns instead
        traceback.print_exc()
        send(ctl, {"op": "ready", "ok": False, "error": f"{type(exc).__name__}: {exc}"})
        return 1
    if threading.active_count() != 1:
        error = f"{threading.active_count() - 1} thread(s) started while importing; forking is unsafe"
        send(ctl, {"op": "ready", "ok": False, "error": error})
        return 1
    gc.collect()
    gc.freeze()  # the children share the imported modules' memory; the GC leaves it untouched
    send(ctl, {"op": "ready", "ok": True, "pid": os.getpid(), "python": sys.version.split()[0]})
    children = serve(ctl, run)
    stop_children(children)
    return 0


if __name__ == "__main__":
    sys.exit(main())
