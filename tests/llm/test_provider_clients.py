"""OpenAI and Anthropic adapters through the real SDKs, against the fake wire-protocol server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest
import trustme
from pydantic import BaseModel

from agent_runtime.domain.plan import Plan, PlanStep
from agent_runtime.errors import LLMAuthError, LLMError, LLMRateLimitError, LLMTimeoutError
from agent_runtime.llm.base import LLMClient, Message, ToolCallRequest, ToolSpec, Usage
from agent_runtime.llm.factory import build_llm_client
from agent_runtime.settings import Provider
from agent_runtime.testing import (
    TEST_MODELS,
    FakeLLM,
    RecordedRequest,
    Reply,
    ScriptedCall,
    resolved_for,
    serve_on_loopback,
)

ClientFactory = Callable[..., LLMClient]  # the ``make_client`` fixture
READ_FILE = ToolSpec(
    name="files.read_file",
    description="Read a text file",
    input_schema={"type": "object", "properties": {"path": {"type": "string"}}, "required": ["path"]},
)
USER = [Message(role="user", content="Read notes.txt and tell me what it says.")]


def _plan() -> Plan:
    step = PlanStep(id="s1", title="Read", instruction="Read notes.txt", tools=["files.read_file"], depends_on=[])
    return Plan(summary="Read the notes.", steps=[step])


async def test_structured_output_comes_back_as_a_validated_plan(
    make_client: ClientFactory, fake: FakeLLM, provider: Provider
) -> None:
    fake.script(Reply(json=_plan().model_dump(mode="json"), input_tokens=30, output_tokens=12))
    client = make_client()

    plan, usage = await client.generate_structured(system="plan it", messages=USER, schema=Plan)

    assert plan == _plan()
    assert usage == Usage(input_tokens=30, output_tokens=12)
    body = fake.requests[0].body
    if provider == "openai":
        assert body["response_format"]["type"] == "json_schema"
        assert body["response_format"]["json_schema"]["strict"] is True
        assert body["messages"][0] == {"role": "system", "content": "plan it"}
    else:
        assert body["output_config"]["format"]["type"] == "json_schema"
        assert body["system"] == "plan it"


async def test_structured_output_that_breaks_the_schema_is_an_llm_error(
    make_client: ClientFactory, fake: FakeLLM
) -> None:
    class Strict(BaseModel):
        count: int

    fake.script(Reply(json={"count": "many"}))
    with pytest.raises(LLMError, match="does not match Strict"):
        await make_client().generate_structured(system="", messages=USER, schema=Strict)
    assert len(fake.requests) == 1


async def test_tool_call_then_tool_result_then_final_text(
    make_client: ClientFactory, fake: FakeLLM, provider: Provider
) -> None:
    fake.script(
        Reply.calls(ScriptedCall("files__read_file", {"path": "notes.txt"}, id="call_1")),
        Reply(text="The notes say hello."),
    )
    client = make_client()

    first = await client.generate(system="exec", messages=USER, tools=[READ_FILE])

    assert first.text == ""
    assert [(c.id, c.name, c.arguments) for c in first.tool_calls] == [
        ("call_1", "files.read_file", {"path": "notes.txt"})
    ]
    assert first.stop_reason == "tool_use"
    history = [
        *USER,
        Message(role="assistant", tool_calls=first.tool_calls),
        Message(role="tool", content="hello", tool_call_id="call_1", tool_name="files.read_file"),
    ]
    final = await client.generate(system="exec", messages=history, tools=[READ_FILE])

    assert final.text == "The notes say hello."
    assert final.tool_calls == ()
    assert final.stop_reason == "end_turn"
    sent = fake.requests[1].body
    if provider == "openai":
        assert [t["function"]["name"] for t in sent["tools"]] == ["files__read_file"]
        assert sent["messages"][2]["tool_calls"][0]["function"]["name"] == "files__read_file"
        assert sent["messages"][3] == {"role": "tool", "tool_call_id": "call_1", "content": "hello"}
    else:
        assert [t["name"] for t in sent["tools"]] == ["files__read_file"]
        assert sent["messages"][1]["content"][0]["name"] == "files__read_file"
        result = sent["messages"][2]["content"][0]
        assert result == {
            "type": "tool_result",
            "tool_use_id": "call_1",
            "content": "hello",
            "is_error": False,
        }


async def test_tool_errors_reach_the_model_marked_as_errors(
    make_client: ClientFactory, fake: FakeLLM, provider: Provider
) -> None:
    fake.script(Reply(text="I could not read it."))
    call = ToolCallRequest(id="c9", name="files.read_file", arguments={"path": "x"})
    history = [
        *USER,
        Message(role="assistant", tool_calls=(call,)),
        Message(role="tool", content="no such file", tool_call_id="c9", is_error=True),
        Message(role="user", content="Try harder."),
    ]

    await make_client().generate(system="", messages=history, tools=[READ_FILE])

    sent = fake.requests[0].body["messages"]
    if provider == "openai":
        assert sent[-2]["content"] == "[tool error] no such file"
    else:  # the tool result and the next user text share one user turn
        assert sent[-1]["content"][0]["is_error"] is True
        assert sent[-1]["content"][1] == {"type": "text", "text": "Try harder."}


async def test_text_deltas_are_streamed_in_order(make_client: ClientFactory, fake: FakeLLM, provider: Provider) -> None:
    fake.script(Reply(text=("Hel", "lo, ", "wor", "ld")))
    seen: list[str] = []

    async def on_delta(text: str) -> None:
        seen.append(text)

    response = await make_client().generate(system="", messages=USER, tools=[], on_text_delta=on_delta)

    assert seen == ["Hel", "lo, ", "wor", "ld"]
    assert response.text == "Hello, world"
    assert response.usage == Usage(input_tokens=11, output_tokens=7)
    assert fake.requests[0].streamed
    if provider == "openai":
        assert fake.requests[0].body["stream_options"] == {"include_usage": True}
        assert "tools" not in fake.requests[0].body


async def test_rate_limit_is_retried_then_succeeds(make_client: ClientFactory, fake: FakeLLM) -> None:
    fake.script(Reply.error(429, retry_after="0"), Reply(text="ok"))

    response = await make_client().generate(system="", messages=USER, tools=[])

    assert response.text == "ok"
    assert len(fake.requests) == 2


async def test_rate_limit_that_persists_is_a_rate_limit_error(make_client: ClientFactory, fake: FakeLLM) -> None:
    fake.script(*[Reply.error(429, retry_after="0")] * 2)

    with pytest.raises(LLMRateLimitError) as caught:
        await make_client(max_retries=1).generate(system="", messages=USER, tools=[])

    assert caught.value.details["attempts"] == 2
    assert len(fake.requests) == 2


async def test_server_errors_give_llm_error_after_max_retries(make_client: ClientFactory, fake: FakeLLM) -> None:
    fake.script(*[Reply.error(500)] * 4)

    with pytest.raises(LLMError) as caught:
        await make_client(max_retries=2).generate_structured(system="", messages=USER, schema=Plan)

    assert type(caught.value) is LLMError
    assert caught.value.details["status"] == 500
    assert caught.value.details["attempts"] == 3
    assert len(fake.requests) == 3


@pytest.mark.parametrize(("status", "error"), [(401, LLMAuthError), (403, LLMAuthError), (400, LLMError)])
async def test_client_errors_are_not_retried(
    make_client: ClientFactory, fake: FakeLLM, status: int, error: type[LLMError]
) -> None:
    fake.script(Reply.error(status), Reply(text="never sent"))

    with pytest.raises(error) as caught:
        await make_client().generate(system="", messages=USER, tools=[])

    assert type(caught.value) is error
    assert not caught.value.retryable
    assert "sk-test" not in caught.value.message
    assert len(fake.requests) == 1


async def test_namespaced_tool_names_round_trip_through_the_wire(
    make_client: ClientFactory, fake: FakeLLM, provider: Provider
) -> None:
    long_server = "s" * 40
    tools = [
        READ_FILE,
        ToolSpec(name="git.status/porcelain", description="", input_schema={"type": "object"}),
        ToolSpec(name=f"{long_server}.{'t' * 40}", description="", input_schema={"type": "object"}),
    ]
    fake.responder = lambda request: Reply.calls(
        *[ScriptedCall(name, {}) for name in _sent_tool_names(request.body, provider)]
    )

    response = await make_client().generate(system="", messages=USER, tools=tools)

    assert [c.name for c in response.tool_calls] == [t.name for t in tools]


def _sent_tool_names(body: dict[str, object], provider: Provider) -> list[str]:
    tools = body["tools"]
    assert isinstance(tools, list)
    if provider == "openai":
        return [t["function"]["name"] for t in tools]
    return [t["name"] for t in tools]


async def test_an_empty_script_fails_clearly(make_client: ClientFactory, fake: FakeLLM) -> None:
    with pytest.raises(LLMError, match="no scripted reply"):
        await make_client().generate(system="", messages=USER, tools=[])


async def test_streaming_works_over_a_real_loopback_socket(fake: FakeLLM, provider: Provider) -> None:
    fake.script(Reply(text=("a", "b")), Reply.calls(ScriptedCall("files__read_file", {"path": "p"})))
    with serve_on_loopback(fake) as root:
        client = build_llm_client(resolved_for(provider, root))
        try:
            seen: list[str] = []

            async def on_delta(text: str) -> None:
                seen.append(text)

            text = await client.generate(system="", messages=USER, tools=[READ_FILE], on_text_delta=on_delta)
            calls = await client.generate(system="", messages=USER, tools=[READ_FILE])
        finally:
            await client.aclose()
    assert seen == ["a", "b"]
    assert text.text == "ab"
    assert calls.tool_calls[0].name == "files.read_file"
    assert json.dumps(calls.tool_calls[0].arguments) == '{"path": "p"}'


async def test_a_slow_provider_times_out_with_llm_timeout_error(fake: FakeLLM, provider: Provider) -> None:
    fake.script(Reply(text="too late", delay_seconds=30))
    with serve_on_loopback(fake) as root:
        client = build_llm_client(resolved_for(provider, root, timeout_seconds=0.3, max_retries=0))
        try:
            with anyio.fail_after(10), pytest.raises(LLMTimeoutError):
                await client.generate(system="", messages=USER, tools=[])
        finally:
            await client.aclose()
    assert len(fake.requests) == 1


async def test_a_failing_responder_is_reported_not_retried(make_client: ClientFactory, fake: FakeLLM) -> None:
    def broken(request: RecordedRequest) -> Reply:
        raise KeyError("missing")

    fake.responder = broken

    with pytest.raises(LLMError, match="responder raised KeyError"):
        await make_client().generate(system="", messages=USER, tools=[])

    assert len(fake.requests) == 1
    assert isinstance(fake.responder_errors[0], KeyError)


async def test_an_error_event_before_any_text_is_retried(make_client: ClientFactory, fake: FakeLLM) -> None:
    fake.script(Reply(stream_error="overloaded_error"), Reply(text="ok"))

    response = await make_client().generate(system="", messages=USER, tools=[])

    assert response.text == "ok"
    assert len(fake.requests) == 2


async def test_an_error_event_after_text_fails_without_repeating_the_text(
    make_client: ClientFactory, fake: FakeLLM
) -> None:
    fake.script(Reply(text=("partial ", "answer"), stream_error="overloaded_error"), Reply(text="again"))
    seen: list[str] = []

    async def on_delta(text: str) -> None:
        seen.append(text)

    with pytest.raises(LLMError) as caught:
        await make_client().generate(system="", messages=USER, tools=[], on_text_delta=on_delta)

    assert not caught.value.retryable
    assert seen == ["partial ", "answer"]
    assert len(fake.requests) == 1


def test_anthropic_turns_alternate_even_around_empty_turns() -> None:
    from agent_runtime.llm.anthropic_client import to_anthropic_messages
    from agent_runtime.llm.naming import ToolNameMap

    call = ToolCallRequest(id="t1", name="files.read_file", arguments={})
    wire = to_anthropic_messages(
        [
            Message(role="user", content="one"),
            Message(role="assistant"),
            Message(role="user", content="two"),
            Message(role="assistant", content="let me look", tool_calls=(call,)),
            Message(role="tool", content="data", tool_call_id="t1"),
            Message(role="user", content="thanks"),
        ],
        ToolNameMap(),
    )

    assert [m["role"] for m in wire] == ["user", "assistant", "user"]
    assert [b["type"] for b in wire[0]["content"]] == ["text", "text"]  # type: ignore[index]
    assert [b["type"] for b in wire[1]["content"]] == ["text", "tool_use"]  # type: ignore[index]
    assert [b["type"] for b in wire[2]["content"]] == ["tool_result", "text"]  # type: ignore[index]


async def test_openai_requests_carry_what_the_sdks_typed_methods_would_send(fake: FakeLLM) -> None:
    """The adapter posts Chat Completions bodies itself (``client.post``, no per-call transform)."""
    from openai.lib._parsing._completions import type_to_response_format_param  # the SDK's own

    fake.script(Reply(json=_plan().model_dump(mode="json")), Reply(text="hi"), Reply(text="again"))
    plain = build_llm_client(resolved_for("openai"), http_client=fake.http_client())
    warm = build_llm_client(resolved_for("openai", temperature=0.2), http_client=fake.http_client())
    try:
        await plain.generate_structured(system="plan it", messages=USER, schema=Plan)
        await plain.generate(system="exec", messages=USER, tools=[])
        await warm.generate(system="exec", messages=USER, tools=[READ_FILE])
    finally:
        await plain.aclose()
        await warm.aclose()

    structured, untooled, tooled = (request.body for request in fake.requests)
    assert structured["response_format"] == type_to_response_format_param(Plan)
    assert structured["model"] == TEST_MODELS["openai"] and structured["max_completion_tokens"] == 256
    assert "stream" not in structured and "temperature" not in structured
    assert untooled["stream"] is True and untooled["stream_options"] == {"include_usage": True}
    assert "tools" not in untooled and "temperature" not in untooled
    assert tooled["temperature"] == 0.2
    assert tooled["tools"] == [
        {"type": "function", "function": {"name": "files__read_file", "description": "Read a text file",
                                          "parameters": READ_FILE.input_schema}}
    ]  # fmt: skip


async def test_openai_structured_output_without_content_is_an_llm_error(fake: FakeLLM) -> None:
    fake.script(Reply(text=""))
    client = build_llm_client(resolved_for("openai", max_retries=0), http_client=fake.http_client())
    try:
        with pytest.raises(LLMError, match="no structured output for Plan: no content"):
            await client.generate_structured(system="", messages=USER, schema=Plan)
    finally:
        await client.aclose()


async def test_requests_go_through_the_proxy_the_environment_names(
    fake: FakeLLM, provider: Provider, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SDKs' aiohttp transport keeps httpx2's proxy variables (HTTP_PROXY, NO_PROXY): the fake
    stands in as the proxy."""
    fake.script(Reply(text="via the proxy"), Reply(text="direct"))
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with serve_on_loopback(fake) as proxy:
        monkeypatch.setenv("HTTP_PROXY", proxy)
        via_proxy = build_llm_client(resolved_for(provider, "http://llm.example.invalid"))
        try:
            response = await via_proxy.generate(system="", messages=USER, tools=[])
        finally:
            await via_proxy.aclose()
        # NO_PROXY: straight to the endpoint, though the proxy named now is a port nobody serves.
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        direct = build_llm_client(resolved_for(provider, proxy, max_retries=0))
        try:
            answer = await direct.generate(system="", messages=USER, tools=[])
        finally:
            await direct.aclose()
    assert response.text == "via the proxy"
    assert fake.requests[0].headers["host"] == "llm.example.invalid"
    assert answer.text == "direct"


async def test_openai_structured_output_cut_short_by_the_token_limit_says_so(fake: FakeLLM) -> None:
    half = json.dumps(_plan().model_dump(mode="json"))[:40]
    fake.script(Reply(text=half, finish_reason="length"))
    client = build_llm_client(resolved_for("openai", max_retries=0), http_client=fake.http_client())
    try:
        with pytest.raises(LLMError, match="Plan was cut short .*raise llm.<role>.max_output_tokens") as caught:
            await client.generate_structured(system="", messages=USER, schema=Plan)
    finally:
        await client.aclose()
    assert caught.value.details["finish_reason"] == "length" and not caught.value.retryable


async def test_https_to_the_provider_verifies_its_certificate_against_ssl_cert_file(
    fake: FakeLLM, provider: Provider, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A private CA (a corporate gateway) is trusted through SSL_CERT_FILE, and only then."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    chain, key, ca_file = tmp_path / "chain.pem", tmp_path / "key.pem", tmp_path / "ca.pem"
    issued.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_file))
    fake.script(Reply(text="over TLS"))
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    with serve_on_loopback(fake, tls=(str(chain), str(key))) as root:
        assert root.startswith("https://")
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        untrusted = build_llm_client(resolved_for(provider, root, max_retries=0))
        try:
            with pytest.raises(LLMError, match="CERTIFICATE_VERIFY_FAILED|certificate verify failed") as caught:
                await untrusted.generate(system="", messages=USER, tools=[])
        finally:
            await untrusted.aclose()
        assert caught.value.message.startswith(f"{provider}: cannot reach {root}/")

        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        trusted = build_llm_client(resolved_for(provider, root))
        try:
            response = await trusted.generate(system="", messages=USER, tools=[])
        finally:
            await trusted.aclose()
    assert response.text == "over TLS"
    assert len(fake.requests) == 1  # the refused handshake sent nothing
