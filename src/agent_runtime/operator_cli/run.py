"""Running one operator command: the client, the output, and errors turned into exit codes."""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Callable
from typing import TextIO

from agent_runtime.client import APIError, Client, ConnectionFailed, InvalidRequest
from agent_runtime.operator_cli import DEFAULT_SERVER
from agent_runtime.operator_cli.codes import Exit
from agent_runtime.operator_cli.commands import UsageError
from agent_runtime.operator_cli.output import Output

Handler = Callable[[Client, argparse.Namespace, Output], int]


def _handler(spec: str) -> Handler:
    module, _, name = spec.partition(":")
    handler: Handler = getattr(importlib.import_module(f"agent_runtime.operator_cli.{module}"), name)
    return handler


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the parsed command; its output goes to ``stdout``/``stderr`` (default: the process's)."""
    out = Output(args.json, stdout, stderr)
    server = args.server or os.environ.get("AGENT_RUNTIME_SERVER") or DEFAULT_SERVER
    try:
        with Client(server, api_key=args.key) as client:
            return int(_handler(args.handler)(client, args, out))
    except UsageError as exc:
        out.error(str(exc))
        return Exit.USAGE
    except InvalidRequest as exc:
        out.api_error(exc)
        return Exit.USAGE
    except APIError as exc:
        out.api_error(exc)
        return Exit.FAILED
    except ConnectionFailed as exc:
        out.error(str(exc))
        return Exit.FAILED
    except TimeoutError as exc:
        out.error(str(exc) or "timed out")
        return Exit.FAILED
    except KeyboardInterrupt:
        return 130
