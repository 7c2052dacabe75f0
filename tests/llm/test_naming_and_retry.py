"""Tool-name mapping and the retry policy, without any SDK."""

from __future__ import annotations

import email.utils
import socket
import time

import anyio
import anyio.abc
import httpx2
import pytest
import structlog

from agent_runtime.errors import ConfigError, LLMAuthError, LLMError, LLMRateLimitError, LLMTimeoutError
from agent_runtime.llm.base import Message
from agent_runtime.llm.factory import build_llm_client
from agent_runtime.llm.naming import WIRE_NAME_RE, ToolNameMap, plain_wire_name
from agent_runtime.llm.retry import RetryPolicy, SDKErrors, call_with_retries, retry_after_seconds
from agent_runtime.settings import Provider
from agent_runtime.testing import resolved_for


def test_namespaced_names_map_to_readable_wire_names_and_back() -> None:
    names = ToolNameMap(["files.read_file", "git.git-status", "time.now"])

    assert names.to_wire("files.read_file") == "files__read_file"
    assert names.to_wire("git.git-status") == "git__git-status"
    for name in ("files.read_file", "git.git-status", "time.now"):
        assert names.from_wire(names.to_wire(name)) == name


def test_colliding_and_overlong_names_get_distinct_hashed_wire_names() -> None:
    long_name = "s" * 40 + "." + "t" * 40
    colliding = ["a.b c", "a.b/c", "a.b_c"]  # all sanitise to a__b_c
    names = ToolNameMap([long_name, *colliding])

    wires = [names.to_wire(n) for n in [long_name, *colliding]]

    assert len(set(wires)) == 4
    assert all(WIRE_NAME_RE.match(w) for w in wires)
    assert all(names.from_wire(names.to_wire(n)) == n for n in [long_name, *colliding])
    assert plain_wire_name("a.b_c") == "a__b_c" not in wires


def test_the_mapping_does_not_depend_on_listing_order() -> None:
    tools = ["a.b c", "a.b/c", "x.y", "s" * 70 + ".t"]

    assert [ToolNameMap(tools).to_wire(t) for t in tools] == [ToolNameMap(reversed(tools)).to_wire(t) for t in tools]


def test_names_met_later_are_added_without_colliding() -> None:
    names = ToolNameMap(["a.b_c"])

    late = names.to_wire("a.b c")

    assert late != "a__b_c"
    assert names.from_wire(late) == "a.b c"
    assert names.from_wire("a__b_c") == "a.b_c"


def test_an_invented_wire_name_comes_back_in_server_tool_form() -> None:
    assert ToolNameMap(["files.read"]).from_wire("shell__exec") == "shell.exec"


def test_retry_after_accepts_seconds_milliseconds_and_http_dates() -> None:
    in_two_minutes = email.utils.formatdate(time.time() + 120, usegmt=True)

    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert 100 < (retry_after_seconds({"retry-after": in_two_minutes}) or 0) <= 120
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    policy = RetryPolicy(max_retries=5, base_delay_seconds=1.0, max_delay_seconds=4.0)

    for attempt, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0)]:
        delay = policy.backoff(attempt)
        assert ceiling / 2 <= delay <= ceiling


class _SDKError(Exception):
    pass


class _StatusError(_SDKError):
    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(f"HTTP {status}")
        self.status_code = status
        self.response = httpx2.Response(status, headers=headers or {})


class _Timeout(_SDKError):
    pass


ERRORS = SDKErrors(base=_SDKError, status=_StatusError, timeout=_Timeout, connection=_Timeout)


async def _run(failures: list[Exception], max_retries: int = 3) -> tuple[str, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    async def attempt() -> str:
        if failures:
            raise failures.pop(0)
        return "ok"

    policy = RetryPolicy(max_retries=max_retries, base_delay_seconds=0.01)
    result = await call_with_retries(attempt, policy=policy, provider="test", errors=ERRORS, sleep=sleep)
    return result, slept


async def test_retry_after_from_the_server_sets_the_delay() -> None:
    result, slept = await _run([_StatusError(429, {"retry-after": "7"}), _StatusError(503)])

    assert result == "ok"
    assert slept[0] == 7.0
    assert 0.005 <= slept[1] <= 0.02


async def test_timeouts_connection_errors_and_5xx_are_retried() -> None:
    result, slept = await _run([_Timeout(), httpx2.ConnectError("refused"), _StatusError(502)])

    assert result == "ok"
    assert len(slept) == 3


@pytest.mark.parametrize(
    ("failure", "expected", "attempts"),
    [
        (_StatusError(401), LLMAuthError, 1),
        (_StatusError(422), LLMError, 1),
        (_StatusError(429), LLMRateLimitError, 3),
        (_Timeout(), LLMTimeoutError, 3),
    ],
)
async def test_failures_become_our_errors_with_the_attempt_count(
    failure: Exception, expected: type[LLMError], attempts: int
) -> None:
    with pytest.raises(expected) as caught:
        await _run([failure] * 5, max_retries=2)

    assert type(caught.value) is expected
    assert caught.value.details["attempts"] == attempts
    assert isinstance(caught.value.__cause__, Exception)


async def test_an_llm_error_marked_not_retryable_is_raised_at_once() -> None:
    failure = LLMError("stream broke after output began", provider="test", retryable=False)

    with pytest.raises(LLMError) as caught:
        await _run([failure])

    assert caught.value is failure
    assert failure.details["attempts"] == 1


async def test_key_fragments_quoted_by_the_provider_are_masked() -> None:
    failure = _StatusError(401)
    failure.args = ("Incorrect API key provided: sk-proj-abc1********************xyz9. See docs.",)

    with pytest.raises(LLMAuthError) as caught:
        await _run([failure])

    assert "abc1" not in caught.value.message
    assert "xyz9" not in caught.value.message
    assert "[redacted]" in caught.value.message


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_a_server_that_drops_the_connection_is_unreachable_not_a_timeout(provider: Provider) -> None:
    accepted = anyio.Event()

    async def drop(stream: anyio.abc.SocketStream) -> None:  # reads the request, closes without a reply
        await stream.receive()
        accepted.set()
        await stream.aclose()

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    client = build_llm_client(resolved_for(provider, root=f"http://127.0.0.1:{port}", max_retries=0))
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, drop)
        try:
            with pytest.raises(LLMError) as caught:
                await client.generate(system="s", messages=[Message(role="user", content="hi")], tools=[])
        finally:
            await client.aclose()
            tg.cancel_scope.cancel()
    assert accepted.is_set()
    assert not isinstance(caught.value, LLMTimeoutError)
    assert caught.value.message.startswith(f"{provider}: cannot reach http://127.0.0.1:{port}/"), caught.value.message
    assert caught.value.retryable


async def test_a_connection_error_names_the_endpoint_and_the_cause() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    providers: tuple[Provider, ...] = ("openai", "anthropic")
    for provider in providers:
        client = build_llm_client(resolved_for(provider, root=f"http://127.0.0.1:{port}", max_retries=1))
        try:
            with structlog.testing.capture_logs() as logs, pytest.raises(LLMError) as caught:
                await client.generate(system="s", messages=[Message(role="user", content="hi")], tools=[])
        finally:
            await client.aclose()
        [retry] = [entry for entry in logs if entry["event"] == "llm_retry"]
        assert retry["error"] == caught.value.message and retry["error_code"] == "llm_error"  # says what failed
        message = caught.value.message
        # Not a timeout, though the SDKs' aiohttp transport raises a ConnectTimeout for it.
        assert not isinstance(caught.value, LLMTimeoutError)
        assert f"cannot reach http://127.0.0.1:{port}/" in message and "ConnectionRefusedError" in message, message
        assert caught.value.retryable
        assert caught.value.details["endpoint"].startswith(f"http://127.0.0.1:{port}/")
        assert "sk-test" not in message


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_a_base_url_with_user_info_is_refused_at_start_without_echoing_it(provider: Provider) -> None:
    with pytest.raises(ConfigError) as caught:
        build_llm_client(resolved_for(provider, root="https://gateway-user:s3cret@llm.example.internal"))
    assert "user info" in caught.value.message and "API key" in caught.value.message
    assert "s3cret" not in caught.value.message and "gateway-user" not in caught.value.message
