"""Settings both clients share: server URL, bearer key, timeouts, headers."""

from __future__ import annotations

import json
import os
from typing import Any

import httpx2

from agent_runtime import __version__
from agent_runtime.client.errors import APIError, error_from
from agent_runtime.client.resume import Backoff

DEFAULT_SERVER = "http://127.0.0.1:8080"
KEY_ENV = "AGENT_RUNTIME_API_KEY"


class ClientConfig:
    """What a client was built with. The key comes from the argument or ``AGENT_RUNTIME_API_KEY``.

    It is sent as ``Authorization: Bearer <key>`` on every request (services without identity
    ignore it) and never appears in ``repr`` or error messages.
    """

    def __init__(
        self,
        server: str,
        api_key: str | None,
        timeout: float,
        stream_timeout: float,
        backoff: Backoff | None,
    ) -> None:
        self.server = server.rstrip("/")
        key = api_key if api_key is not None else os.environ.get(KEY_ENV, "")
        self.headers = {"User-Agent": f"agent-runtime-client/{__version__}", "Accept": "application/json"}
        if key:
            self.headers["Authorization"] = f"Bearer {key}"
        self.timeout = httpx2.Timeout(timeout)
        # A stream is quiet between events; the service pings every server.sse_ping_seconds (15 s by
        # default), so a read that waits this long means the connection is gone: reconnect.
        self.stream_timeout = httpx2.Timeout(timeout, read=stream_timeout)
        self.backoff = backoff or Backoff()

    def __repr__(self) -> str:
        return f"ClientConfig(server={self.server!r}, key={'set' if 'Authorization' in self.headers else 'unset'})"


def _json(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return None


def check(response: httpx2.Response) -> None:
    """Raise the service's error for a failed answer (the body must have been read)."""
    if response.status_code >= 400:
        raise error_from(response.status_code, _json(response.content))


def answer(response: httpx2.Response, binary: bool = False) -> Any:
    """A successful answer's body: JSON, or the bytes themselves (``binary``: a download)."""
    check(response)
    return response.content if binary else _json(response.content)


def stream_failure(response: httpx2.Response) -> APIError | None:
    """For a stream that did not open: the error to raise at once (``None``: worth reconnecting)."""
    error = error_from(response.status_code, _json(response.content))
    return None if response.status_code >= 500 or response.status_code == 429 else error
