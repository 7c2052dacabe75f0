"""A cap on request bodies, enforced at the ASGI layer before a handler reads anything.

A body whose ``Content-Length`` is over ``limits.max_body_bytes`` is refused with 413 before a
byte of it is read; a chunked body is counted as it arrives and refused the moment it passes the
cap. Bodies of JSON requests must also be valid UTF-8 (RFC 8259): otherwise 422 naming ``body``
(the JSON parser would otherwise answer a generic 400).
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agent_runtime.api.errors import error_body

_WITH_BODY = frozenset({"POST", "PUT", "PATCH"})


class BodyLimit:
    """Pure ASGI middleware: buffers bodies of at most ``max_bytes`` and replays them to the app."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _WITH_BODY:
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_bytes:
            await _refuse(send, 413, "payload_too_large", self._too_large())
            return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await _refuse(send, 413, "payload_too_large", self._too_large())
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if body and _is_json(scope):
            try:
                body.decode("utf-8")
            except UnicodeDecodeError as exc:
                message_text = f"body: not valid UTF-8 (byte {exc.start})"
                fields = [{"field": "body", "message": "not valid UTF-8", "type": "utf8_invalid"}]
                await _refuse(send, 422, "validation_error", message_text, {"fields": fields})
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()  # after the body: wait for the disconnect, as the server would

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes (limits.max_body_bytes)"


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def _is_json(scope: Scope) -> bool:
    for name, value in scope["headers"]:
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


async def _refuse(send: Send, status: int, code: str, message: str, details: dict[str, object] | None = None) -> None:
    payload = json.dumps(error_body(code, message, details)).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode())]
    if status == 413:
        headers.append((b"connection", b"close"))  # the rest of the body is not read
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": payload})
