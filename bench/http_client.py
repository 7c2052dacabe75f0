"""A small HTTP/1.1 client for the benchmarks: keep-alive connections on asyncio streams, and SSE.

``bench_core.py`` drives the service over HTTP from the same two cores the service runs on, so the
client's own CPU is taken from the server. httpx + httpx-sse cost ~7 ms of CPU per task (three
requests and a dozen events); this client does the same work with a fraction of that. It is still a
real client over TCP: it writes real requests and parses what comes back — status line, headers,
``Content-Length`` and chunked bodies, SSE frames (``id``, ``event``, ``data``, comments) — and
raises on anything unexpected: a status it was not told to accept, a malformed head or chunk, a
stream that is not ``text/event-stream``, a connection that closes early.

Not a general client: no TLS, no redirects, no compression, no proxies, one host.
"""

from __future__ import annotations

import asyncio
import codecs
import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import anyio


class HTTPError(RuntimeError):
    """The server answered something the caller did not expect (or not HTTP/1.1 at all)."""


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


@dataclass(frozen=True)
class ServerSentEvent:
    event: str
    data: str
    id: str | None


class _Connection:
    """One keep-alive TCP connection; requests on it are sequential."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.reused = False

    @property
    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    async def write(self, data: bytes) -> None:
        self.writer.write(data)
        if self.writer.transport.get_write_buffer_size() > 65536:
            await self.writer.drain()

    async def read_head(self) -> tuple[int, dict[str, str], bool]:
        """Status, headers (names lower-case; a repeated header keeps the last value), keep-alive."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as exc:
            raise ConnectionResetError(f"connection closed before a response ({len(exc.partial)} bytes)") from None
        status_line, *lines = head[:-4].decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        code = rest[:3]
        if version not in ("HTTP/1.1", "HTTP/1.0") or not code.isdigit():
            raise HTTPError(f"not an HTTP/1.x status line: {status_line!r}")
        headers: dict[str, str] = {}
        for line in lines:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise HTTPError(f"malformed header line: {line!r}")
            headers[name.lower()] = value.strip()
        connection = headers.get("connection", "").lower()
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        return int(code), headers, keep_alive

    async def read_chunk(self) -> bytes | None:
        """The next chunk of a chunked body, or None at its end (trailers read and dropped)."""
        line = await self.reader.readuntil(b"\r\n")
        size_text = line[:-2].split(b";", 1)[0].strip()
        try:
            size = int(size_text, 16)
        except ValueError:
            raise HTTPError(f"malformed chunk size line: {line!r}") from None
        if size == 0:
            while await self.reader.readuntil(b"\r\n") != b"\r\n":
                pass  # trailer fields
            return None
        data = await self.reader.readexactly(size + 2)
        if data[-2:] != b"\r\n":
            raise HTTPError("chunk data not followed by CRLF")
        return data[:-2]

    async def read_body(self, method: str, status: int, headers: dict[str, str]) -> tuple[bytes, bool]:
        """The whole body, and whether the connection is still usable after it."""
        if method == "HEAD" or status in (204, 304) or 100 <= status < 200:
            return b"", True
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts = []
            while (chunk := await self.read_chunk()) is not None:
                parts.append(chunk)
            return b"".join(parts), True
        length = headers.get("content-length")
        if length is not None:
            if not length.isdigit():
                raise HTTPError(f"malformed Content-Length: {length!r}")
            return await self.reader.readexactly(int(length)), True
        return await self.reader.read(), False  # delimited by the connection's end

    def close(self) -> None:
        self.writer.close()


_EOL = re.compile(r"\r\n|\r|\n")


class SSEParser:
    """Server-sent events from a byte stream (the WHATWG event-stream format).

    Lines end with CRLF, LF or CR; ``:`` starts a comment; ``data`` lines accumulate; an empty line
    dispatches the event (none if it has no data). ``retry`` is ignored.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._buffer = ""
        self._data: list[str] = []
        self._event = ""
        self._last_id: str | None = None

    def feed(self, data: bytes) -> list[ServerSentEvent]:
        text = self._buffer + self._decoder.decode(data)
        events = []
        pos, end = 0, len(text)
        while (m := _EOL.search(text, pos)) is not None:
            if m.end() == end and m.group() == "\r":
                break  # may be the first half of a CRLF split between chunks
            event = self._line(text[pos : m.start()])
            if event is not None:
                events.append(event)
            pos = m.end()
        self._buffer = text[pos:]
        return events

    def flush(self) -> list[ServerSentEvent]:
        """At the stream's end: a pending lone CR ends its line; an unterminated event is dropped."""
        rest, self._buffer = self._buffer + self._decoder.decode(b"", final=True), ""
        if rest.endswith("\r"):
            event = self._line(rest[:-1])
            return [event] if event is not None else []
        return []

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            if not self._data:
                self._event = ""
                return None
            event = ServerSentEvent(event=self._event or "message", data="\n".join(self._data), id=self._last_id)
            self._data, self._event = [], ""
            return event
        if line[0] == ":":
            return None
        name, sep, value = line.partition(":")
        if sep and value[:1] == " ":
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value
        return None


class EventStream:
    """An open ``text/event-stream`` response: iterate for events; the body's end ends the iteration."""

    def __init__(self, conn: _Connection, timeout: float) -> None:
        self._conn = conn
        self._timeout = timeout
        self._parser = SSEParser()
        self._pending: list[ServerSentEvent] = []
        self.ended = False

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> ServerSentEvent:
        while not self._pending:
            if self.ended:
                raise StopAsyncIteration
            with anyio.fail_after(self._timeout):
                chunk = await self._conn.read_chunk()
            if chunk is None:
                self.ended = True
                self._pending.extend(self._parser.flush())
            else:
                self._pending.extend(self._parser.feed(chunk))
        return self._pending.pop(0)

    async def finish(self) -> list[ServerSentEvent]:
        """Read to the end of the body (the server ends it); the events that were still to come."""
        rest = [event async for event in self]
        return rest


class HttpClient:
    """Keep-alive connections to one ``http://host:port``, opened on demand and reused (newest first)."""

    def __init__(self, base_url: str, *, timeout: float = 60) -> None:
        parts = urlsplit(base_url)
        if parts.scheme != "http" or not parts.hostname or parts.port is None:
            raise ValueError(f"need http://host:port, got {base_url!r}")
        self._host, self._port = parts.hostname, parts.port
        self._host_header = f"Host: {parts.hostname}:{parts.port}\r\n"
        self._timeout = timeout
        self._idle: list[_Connection] = []
        self.connections_opened = 0

    async def _connect(self) -> _Connection:
        reader, writer = await asyncio.open_connection(self._host, self._port)
        self.connections_opened += 1
        return _Connection(reader, writer)

    async def _acquire(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if conn.usable:
                conn.reused = True
                return conn
            conn.close()
        return await self._connect()

    def _release(self, conn: _Connection, reusable: bool) -> None:
        if reusable and conn.usable:
            self._idle.append(conn)
        else:
            conn.close()

    def _head(self, method: str, path: str, headers: dict[str, str] | None, body: bytes | None) -> bytes:
        lines = [f"{method} {path} HTTP/1.1\r\n", self._host_header]
        if body is not None:
            lines.append(f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n")
        for name, value in (headers or {}).items():
            lines.append(f"{name}: {value}\r\n")
        lines.append("\r\n")
        return "".join(lines).encode("latin-1")

    async def _send(
        self, method: str, path: str, headers: dict[str, str] | None, body: bytes | None
    ) -> tuple[_Connection, int, dict[str, str], bool]:
        """Write the request, read the response head; a reused connection the server had already
        closed (it closes idle ones) gets the request again on a new one."""
        request = self._head(method, path, headers, body) + (body or b"")
        while True:
            conn = await self._acquire()
            try:
                await conn.write(request)
                status, response_headers, keep_alive = await conn.read_head()
            except (ConnectionResetError, BrokenPipeError):
                conn.close()
                if conn.reused:
                    continue  # nothing of the response arrived: the server never took the request
                raise
            except BaseException:
                conn.close()
                raise
            return conn, status, response_headers, keep_alive

    async def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        headers: dict[str, str] | None = None,
        expect: tuple[int, ...] = (200,),
    ) -> Response:
        """One request; raises :class:`HTTPError` unless the status is one of ``expect``."""
        body = None if json_body is None else json.dumps(json_body).encode()
        with anyio.fail_after(self._timeout):
            conn, status, response_headers, keep_alive = await self._send(method, path, headers, body)
            try:
                content, usable = await conn.read_body(method, status, response_headers)
            except BaseException:
                conn.close()
                raise
        self._release(conn, keep_alive and usable)
        response = Response(status, response_headers, content)
        if status not in expect:
            raise HTTPError(f"{method} {path}: {status} {response.text[:500]}")
        return response

    @asynccontextmanager
    async def events(self, path: str, *, headers: dict[str, str] | None = None) -> AsyncIterator[EventStream]:
        """``GET path`` as an SSE stream (status 200, ``text/event-stream``, chunked). Leaving the block
        before the body ended closes the connection; after, it is reused."""
        with anyio.fail_after(self._timeout):
            conn, status, response_headers, keep_alive = await self._send(
                "GET", path, {"Accept": "text/event-stream", **(headers or {})}, None
            )
        stream = EventStream(conn, self._timeout)
        try:
            if status != 200:
                body, _ = await conn.read_body("GET", status, response_headers)
                raise HTTPError(f"GET {path}: {status} {body[:500].decode('utf-8', 'replace')}")
            if not response_headers.get("content-type", "").startswith("text/event-stream"):
                raise HTTPError(f"GET {path}: not an event stream: {response_headers.get('content-type')!r}")
            if "chunked" not in response_headers.get("transfer-encoding", "").lower():
                raise HTTPError(f"GET {path}: an event stream without chunked transfer encoding")
            yield stream
        except BaseException:
            conn.close()
            raise
        self._release(conn, keep_alive and stream.ended)

    async def aclose(self) -> None:
        for conn in self._idle:
            conn.close()
        self._idle.clear()

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()
