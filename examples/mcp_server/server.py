"""Example MCP server for agent-runtime: notes in the working directory, arithmetic, echo, wait, fail.

Run over stdio (the default, as the tool pool starts it)::

    python examples/mcp_server/server.py

or over streamable HTTP on 127.0.0.1::

    python examples/mcp_server/server.py --http --port 8765      # endpoint: http://127.0.0.1:8765/mcp

Notes live as ``<name>.txt`` files in the process's working directory, which the tool pool sets to
the task's workspace. If ``$EXAMPLE_MCP_CALL_LOG`` is set, every call appends a ``start`` and an
``end`` JSON line (tool, arguments, pid, time) to that file, flushed and fsynced before the result is
returned, so tests can prove which calls ran and how often.

The ``Context`` annotation is resolved at runtime, so this module does not use postponed annotations.
"""

import argparse
import json
import os
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations

CALL_LOG_ENV = "EXAMPLE_MCP_CALL_LOG"
NOTE_SUFFIX = ".txt"
_NOTE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")

READ_ONLY = ToolAnnotations(read_only_hint=True, idempotent_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False)


def _append_call_log(entry: dict[str, Any]) -> None:
    """Append one JSON line to the call log and make it durable before anything else happens."""
    path = os.environ.get(CALL_LOG_ENV)
    if not path:
        return
    line = json.dumps(entry, sort_keys=True) + "\n"
    with open(path, "a", encoding="utf-8") as log:
        log.write(line)
        log.flush()
        os.fsync(log.fileno())


@contextmanager
def _recorded(tool: str, arguments: dict[str, Any]) -> Iterator[None]:
    """Record the start of a call, run it, then record its end (with ``is_error``) before returning."""
    base = {"tool": tool, "arguments": arguments, "pid": os.getpid()}
    _append_call_log({**base, "event": "start", "time": time.time()})
    is_error = True
    try:
        yield
        is_error = False
    finally:
        _append_call_log({**base, "event": "end", "time": time.time(), "is_error": is_error})


def _note_path(root: Path, name: str) -> Path:
    if not _NOTE_NAME.match(name):
        raise ToolError(
            f"invalid note name {name!r}: use 1-64 letters, digits, '-' or '_', starting with a letter or digit"
        )
    return root / f"{name}{NOTE_SUFFIX}"


def build_server(notes_dir: Path | None = None) -> MCPServer:
    """Build the server; notes go to ``notes_dir`` or, if ``None``, the working directory at call time."""

    def root() -> Path:
        return notes_dir if notes_dir is not None else Path.cwd()

    server = MCPServer(
        "agent-runtime-example",
        instructions="Notes in the task workspace, arithmetic, echo, a slow 'wait' and a failing 'fail'.",
    )

    @server.tool(annotations=WRITE)
    def write_note(name: str, text: str) -> str:
        """Write (or overwrite) the note ``name`` with ``text`` in the workspace."""
        with _recorded("write_note", {"name": name, "text": text}):
            path = _note_path(root(), name)
            path.write_text(text, encoding="utf-8")
            return f"wrote {len(text)} characters to note {name!r}"

    @server.tool(annotations=READ_ONLY)
    def read_note(name: str) -> str:
        """Return the text of the note ``name``."""
        with _recorded("read_note", {"name": name}):
            path = _note_path(root(), name)
            try:
                return path.read_text(encoding="utf-8")
            except FileNotFoundError:
                raise ToolError(f"no note named {name!r}") from None

    @server.tool(annotations=READ_ONLY)
    def list_notes() -> list[str]:
        """List the names of the notes in the workspace, sorted."""
        with _recorded("list_notes", {}):
            return sorted(p.name[: -len(NOTE_SUFFIX)] for p in root().glob(f"*{NOTE_SUFFIX}") if p.is_file())

    @server.tool(annotations=READ_ONLY)
    def add(a: float, b: float) -> float:
        """Return ``a + b``."""
        with _recorded("add", {"a": a, "b": b}):
            return a + b

    @server.tool(annotations=READ_ONLY)
    def multiply(a: float, b: float) -> float:
        """Return ``a * b``."""
        with _recorded("multiply", {"a": a, "b": b}):
            return a * b

    @server.tool(annotations=READ_ONLY)
    def echo(text: str) -> str:
        """Return ``text`` unchanged."""
        with _recorded("echo", {"text": text}):
            return text

    @server.tool(annotations=READ_ONLY)
    async def wait(seconds: float, ctx: Context, steps: int = 10) -> str:
        """Wait ``seconds`` in ``steps`` equal steps, reporting progress after each step."""
        if seconds < 0 or steps < 1:
            raise ToolError("seconds must be >= 0 and steps >= 1")
        with _recorded("wait", {"seconds": seconds, "steps": steps}):
            await ctx.report_progress(0, steps, f"started (pid {os.getpid()})")
            for step in range(1, steps + 1):
                await anyio.sleep(seconds / steps)
                await ctx.report_progress(step, steps, f"step {step}/{steps}")
            return f"waited {seconds} seconds"

    @server.tool(annotations=READ_ONLY)
    def fail(message: str) -> str:
        """Always fail with ``message``; the client receives an ``isError`` result."""
        with _recorded("fail", {"message": message}):
            raise ToolError(message)

    return server


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    parser.add_argument("--host", default="127.0.0.1", help="HTTP bind address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8765, help="HTTP port (default 8765)")
    args = parser.parse_args(argv)
    server = build_server()
    if args.http:
        server.run("streamable-http", host=args.host, port=args.port)
    else:
        server.run("stdio")


if __name__ == "__main__":
    main()
