"""The benchmarks' HTTP/1.1 + SSE client (bench/http_client.py) parses what servers really send."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import pytest
from bench.http_client import HttpClient, HTTPError, ServerSentEvent, SSEParser

from tests.support.harness import live_service, make_settings

FRAMES = (
    b'id: 1\r\nevent: x\r\ndata: {"a":1}\r\n\r\n'
    b": ping - 2026-11-21 09:00:00+00:00\r\n\r\n"
    b"id: 2\r\nevent: y\r\ndata: two\r\ndata: lines\r\n\r\n"
    b"data:lf only\n\n"
    b"event: z\rdata: cr\r\r"
    b"retry: 10\nid\ndata: \xc3\xbcnicode\r\n\r\n"
)
EXPECTED = [
    ServerSentEvent(event="x", data='{"a":1}', id="1"),
    ServerSentEvent(event="y", data="two\nlines", id="2"),
    ServerSentEvent(event="message", data="lf only", id="2"),
    ServerSentEvent(event="z", data="cr", id="2"),
    ServerSentEvent(event="message", data="ünicode", id=""),
]


def test_sse_frames_parse_the_same_however_the_bytes_are_split() -> None:
    assert SSEParser().feed(FRAMES) == EXPECTED
    for size in range(1, 9):  # splits CRLF pairs and the two bytes of "ü"
        parser = SSEParser()
        got = [event for i in range(0, len(FRAMES), size) for event in parser.feed(FRAMES[i : i + size])]
        assert got + parser.flush() == EXPECTED, size


@asynccontextmanager
async def _server(replies: list[bytes | None]) -> AsyncIterator[tuple[str, list[tuple[int, bytes]]]]:
    """A loopback server answering the n-th request (whatever its connection) with ``replies[n]``:
    ``None`` closes the connection without an answer, as a server closing an idle keep-alive
    connection does. Yields its URL and (connection number, request line) per answered request.
    A reply with ``Connection: close`` closes the connection after it."""
    answered: list[tuple[int, bytes]] = []
    count = 0
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal count, connections
        connections += 1
        me = connections
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                reply = replies[count]
                count += 1
                if reply is None:
                    break
                answered.append((me, head.split(b"\r\n", 1)[0]))
                writer.write(reply)
                await writer.drain()
                if b"Connection: close" in reply:
                    break
        except asyncio.IncompleteReadError:
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}", answered
    finally:
        server.close()


async def test_bodies_by_length_and_chunked_keep_alive_and_unexpected_statuses_raise() -> None:
    replies: list[bytes | None] = [
        b'HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{"id": 7}',
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r\n2\r\nef\r\n0\r\nX-Trailer: 1\r\n\r\n",
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ]
    async with _server(replies) as (url, answered), HttpClient(url, timeout=5) as client:
        created = await client.request("POST", "/v1/tasks", json_body={"prompt": "x"}, expect=(202,))
        assert created.json() == {"id": 7}
        chunked = await client.request("GET", "/chunked")
        assert chunked.body == b"abcdef"
        with pytest.raises(HTTPError, match="404 nope"):
            await client.request("GET", "/missing")
        assert (await client.request("GET", "/again")).body == b"ok"
    assert [c for c, _ in answered] == [1, 1, 1, 2]  # one connection until the server said close
    assert answered[0][1] == b"POST /v1/tasks HTTP/1.1"
    assert client.connections_opened == 2


async def test_a_request_the_server_closes_a_kept_alive_connection_on_goes_out_again_on_a_new_one() -> None:
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"
    async with _server([ok, None, ok]) as (url, answered), HttpClient(url, timeout=5) as client:
        await client.request("GET", "/first")
        assert (await client.request("POST", "/second", json_body={})).body == b"a"
        assert answered == [(1, b"GET /first HTTP/1.1"), (2, b"POST /second HTTP/1.1")]
    async with _server([None]) as (url, _), HttpClient(url, timeout=5) as client:
        with pytest.raises(ConnectionResetError):  # on a new connection there is nothing to retry
            await client.request("GET", "/")


@pytest.mark.parametrize(
    "reply",
    [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",  # not a hex size
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n",  # size mismatch
        b"HTTP/1.1 200 OK\r\nbad header\r\nContent-Length: 0\r\n\r\n",
        b"SMTP ready\r\n\r\n",
    ],
)
async def test_malformed_responses_raise(reply: bytes) -> None:
    async with _server([reply]) as (url, _), HttpClient(url, timeout=5) as client:
        with pytest.raises(HTTPError):
            await client.request("GET", "/")


async def test_an_event_stream_must_be_one() -> None:
    reply = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}"
    async with _server([reply]) as (url, _), HttpClient(url, timeout=5) as client:
        with pytest.raises(HTTPError, match="not an event stream"):
            async with client.events("/stream"):
                pass


async def test_a_whole_task_through_the_service_on_two_kept_alive_connections(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live, HttpClient(live.url, timeout=30) as client:
        for _ in range(2):
            task = (await client.request("POST", "/v1/tasks", json_body={"prompt": "Echo hi."}, expect=(202,))).json()
            with anyio.fail_after(30):
                async with client.events(f"/v1/tasks/{task['id']}/stream") as stream:
                    seen = []
                    async for event in stream:
                        seen.append(event)
                        if event.event == "approval_required":
                            await client.request(
                                "POST", f"/v1/tasks/{task['id']}/approve", json_body={"plan_version": 1}, expect=(202,)
                            )
                        if event.event == "task_completed":
                            break
                    assert await stream.finish() == []
            assert [int(e.id or 0) for e in seen] == list(range(1, len(seen) + 1))
            assert seen[0].event == "task_created" and seen[-1].event == "task_completed"
        with pytest.raises(HTTPError, match="404"):
            async with client.events("/v1/tasks/task_000000000000000000000000/stream"):
                pass
    assert client.connections_opened == 2
