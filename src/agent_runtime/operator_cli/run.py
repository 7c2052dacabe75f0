"""Running one operator command: the client, the output, and errors turned into exit codes.

Under ``--json`` a command prints exactly one JSON document on stdout (``watch``: one per event,
JSON Lines), a failure included: ``{"error": {"code", "message", "details"}}``, the service's own
error shape, with codes of the CLI's own for what never reached the service (``usage_error``,
``connection_failed``, ``timeout``, ``interrupted``). The message also goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import os
from collections.abc import Callable
from typing import TextIO

from agent_runtime.client import APIError, Client, ConnectionFailed, InvalidRequest, Unauthorized
from agent_runtime.client.base import KEY_ENV
from agent_runtime.operator_cli import DEFAULT_SERVER
from agent_runtime.operator_cli.codes import Exit
from agent_runtime.operator_cli.commands import UsageError
from agent_runtime.operator_cli.output import Output

Handler = Callable[[Client, argparse.Namespace, Output], int]
SERVER_ENV = "AGENT_RUNTIME_SERVER"


def _handler(spec: str) -> Handler:
    module, _, name = spec.partition(":")
    handler: Handler = getattr(importlib.import_module(f"agent_runtime.operator_cli.{module}"), name)
    return handler


def connect(args: argparse.Namespace) -> Client:
    """The client a command talks through: ``--server``, else ``$AGENT_RUNTIME_SERVER``, else
    http://127.0.0.1:8080; the key from ``--key``, else ``$AGENT_RUNTIME_API_KEY`` (none: no header)."""
    server = args.server or os.environ.get(SERVER_ENV) or DEFAULT_SERVER
    return Client(server, api_key=args.key)


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """Run the parsed command; its output goes to ``stdout``/``stderr`` (default: the process's)."""
    out = Output(args.json, stdout, stderr)
    try:
        with connect(args) as client:
            return int(_handler(args.handler)(client, args, out))
    except UsageError as exc:
        out.error("usage_error", str(exc))
        return Exit.USAGE
    except InvalidRequest as exc:
        out.api_error(exc)
        return Exit.USAGE
    except Unauthorized as exc:
        out.api_error(exc, hint=_key_hint(args, exc))
        return Exit.FAILED
    except APIError as exc:
        out.api_error(exc)
        return Exit.FAILED
    except ConnectionFailed as exc:
        out.error("connection_failed", str(exc), details={"server": exc.server})
        return Exit.FAILED
    except TimeoutError as exc:
        out.error("timeout", str(exc) or "timed out")
        return Exit.FAILED
    except KeyboardInterrupt:
        out.error("interrupted", "interrupted")
        return 130


def _key_hint(args: argparse.Namespace, exc: Unauthorized) -> str:
    if exc.status == 403:
        return "the key is valid but its roles do not allow this"
    if args.key:
        return "the service did not accept the key given with --key"
    if os.environ.get(KEY_ENV):
        return f"the service did not accept the key in ${KEY_ENV}"
    return f"the service wants an API key: set ${KEY_ENV} (or pass --key)"
