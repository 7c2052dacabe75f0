"""structlog configuration: JSON when not on a terminal, console renderer otherwise.

Context (``task_id``, ``step_id``, ``request_id``) is bound through contextvars. Secrets are
redacted by key name; prompts and tool arguments are not logged unless ``server.log_payloads``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

from agent_runtime.settings import ServerSettings

SECRET_KEYS = ("api_key", "authorization", "password", "secret", "token")
PAYLOAD_KEYS = ("prompt", "arguments", "text", "output")


def _redactor(log_payloads: bool) -> structlog.types.Processor:
    def redact(_logger: Any, _name: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
        for key in list(event):
            lowered = key.lower()
            if any(s in lowered for s in SECRET_KEYS):
                event[key] = "***"
            elif not log_payloads and lowered in PAYLOAD_KEYS:
                event[key] = "[redacted: set server.log_payloads to log]"
        return event

    return redact


def configure_logging(server: ServerSettings) -> None:
    level = getattr(logging, server.log_level.upper())
    fmt = server.log_format
    if fmt == "auto":
        fmt = "console" if sys.stderr.isatty() else "json"
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if fmt == "json" else structlog.dev.ConsoleRenderer(colors=False)
    )
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        _redactor(server.log_payloads),
    ]
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared,
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("httpx", "httpx2", "httpcore", "mcp", "uvicorn.access"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))
