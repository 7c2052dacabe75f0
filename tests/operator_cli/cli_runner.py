"""Run ``agent-runtime`` commands in process and capture what they print.

The command line is parsed by the real ``agent-runtime`` parser (``cli.build_parser``) and run by
the same function ``main`` calls, with its output sent to buffers: the service under test runs in
the same process and logs to stdout, so the process's stdout would mix the two. Commands run in a
worker thread, so the live service in the test's event loop keeps serving.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from typing import Any

import anyio

from agent_runtime.cli import build_parser
from agent_runtime.operator_cli.run import run


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)

    def json_lines(self) -> list[Any]:
        return [json.loads(line) for line in self.out.splitlines() if line.strip()]


@dataclass
class CLI:
    server: str | None
    """Passed as ``--server``; ``None``: none (``$AGENT_RUNTIME_SERVER`` or the default applies)."""

    async def __call__(self, *argv: str) -> Result:
        server = ["--server", self.server] if self.server is not None else []
        args = build_parser().parse_args([*argv, *server])
        assert args.func.__module__ == "agent_runtime.operator_cli"
        out, err = io.StringIO(), io.StringIO()
        with anyio.fail_after(60):
            code = await anyio.to_thread.run_sync(run, args, out, err)
        return Result(code, out.getvalue(), err.getvalue())
