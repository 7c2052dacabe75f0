"""Provider fallback (``llm.<role>.fallback``) through the real SDKs, against two fake providers on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from agent_runtime.domain.plan import Plan
from agent_runtime.errors import ConfigError, LLMError
from agent_runtime.llm.base import Message, Usage
from agent_runtime.llm.factory import build_llm_client
from agent_runtime.settings import LLMSettings, ResolvedLLM
from agent_runtime.testing import FakeLLM, Reply, one_step_plan, resolved_for, serve_on_loopback

USER = [Message(role="user", content="Echo hello.")]
PLAN = one_step_plan("example.echo")


@pytest.fixture
def loopback() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def _chain(stack: ExitStack, primary: FakeLLM, fallback: FakeLLM) -> ResolvedLLM:
    """OpenAI (primary) at one fake, Anthropic (fallback) at another, both over real HTTP."""
    first = stack.enter_context(serve_on_loopback(primary))
    second = stack.enter_context(serve_on_loopback(fallback))
    return resolved_for("openai", first, max_retries=1, fallback=(resolved_for("anthropic", second, max_retries=1),))


async def test_a_primary_answering_503_persistently_hands_the_call_to_the_fallback_which_is_named(
    loopback: ExitStack,
) -> None:
    primary = FakeLLM(responder=lambda _: Reply.error(503))
    fallback = FakeLLM(Reply(json=PLAN, input_tokens=7, output_tokens=3), Reply(text="hello"))
    client = build_llm_client(_chain(loopback, primary, fallback))
    try:
        plan, usage = await client.generate_structured(system="plan", messages=USER, schema=Plan)
        deltas: list[str] = []

        async def on_delta(text: str) -> None:
            deltas.append(text)

        response = await client.generate(system="run", messages=USER, tools=[], on_text_delta=on_delta)
    finally:
        await client.aclose()

    assert plan.steps[0].tools == ["example.echo"]
    assert usage == Usage(7, 3, provider="anthropic", model="claude-sonnet-4-6")
    assert response.text == "hello" and "".join(deltas) == "hello"
    assert (response.usage.provider, response.usage.model) == ("anthropic", "claude-sonnet-4-6")
    # Each call: the primary's own try and its one retry, then the fallback once.
    assert len(primary.requests) == 4
    assert [r.api for r in fallback.requests] == ["anthropic", "anthropic"]
    # The client still reports the primary: it is shared by many tasks, the answer names the model.
    assert (client.provider, client.model) == ("openai", "gpt-4.1-mini")


async def test_a_primary_that_answers_names_itself_and_the_fallback_is_never_called(loopback: ExitStack) -> None:
    primary = FakeLLM(Reply(text="from the primary"))
    fallback = FakeLLM()
    client = build_llm_client(_chain(loopback, primary, fallback))
    try:
        response = await client.generate(system="run", messages=USER, tools=[])
    finally:
        await client.aclose()
    assert response.text == "from the primary"
    assert (response.usage.provider, response.usage.model) == ("openai", "gpt-4.1-mini")
    assert fallback.requests == []


async def test_a_400_from_the_primary_is_not_retried_on_the_fallback(loopback: ExitStack) -> None:
    primary = FakeLLM(Reply.error(400, message="messages: bad request"))
    fallback = FakeLLM()
    client = build_llm_client(_chain(loopback, primary, fallback))
    try:
        with pytest.raises(LLMError, match="HTTP 400") as caught:
            await client.generate(system="run", messages=USER, tools=[])
    finally:
        await client.aclose()
    assert caught.value.details["status"] == 400 and "models_tried" not in caught.value.details
    assert len(primary.requests) == 1 and fallback.requests == []


async def test_a_refused_primary_key_falls_back(loopback: ExitStack) -> None:
    primary = FakeLLM(Reply.error(401, message="Incorrect API key provided"))
    fallback = FakeLLM(Reply(text="hello"))
    client = build_llm_client(_chain(loopback, primary, fallback))
    try:
        response = await client.generate(system="run", messages=USER, tools=[])
    finally:
        await client.aclose()
    assert response.usage.model == "claude-sonnet-4-6"
    assert len(primary.requests) == 1  # a refused key is not retried on the same provider


async def test_both_down_raises_the_usual_llm_error_naming_the_models_tried(loopback: ExitStack) -> None:
    primary = FakeLLM(responder=lambda _: Reply.error(503))
    fallback = FakeLLM(responder=lambda _: Reply.error(529, message="Overloaded"))
    client = build_llm_client(_chain(loopback, primary, fallback))
    try:
        with pytest.raises(LLMError) as caught:
            await client.generate(system="run", messages=USER, tools=[])
    finally:
        await client.aclose()
    error = caught.value
    assert error.code.value == "llm_error" and error.provider == "anthropic"
    assert error.details["status"] == 529 and error.details["attempts"] == 2
    assert error.details["models_tried"] == ["openai/gpt-4.1-mini", "anthropic/claude-sonnet-4-6"]
    assert len(primary.requests) == 2 and len(fallback.requests) == 2


async def test_a_stream_that_failed_after_text_reached_the_caller_does_not_fall_back(loopback: ExitStack) -> None:
    """Streamed text cannot be taken back: the fallback's answer would repeat or contradict it."""
    primary = FakeLLM(Reply(text="partial answer", stream_error="server_error"))
    fallback = FakeLLM()
    client = build_llm_client(_chain(loopback, primary, fallback))
    deltas: list[str] = []

    async def on_delta(text: str) -> None:
        deltas.append(text)

    try:
        with pytest.raises(LLMError):
            await client.generate(system="run", messages=USER, tools=[], on_text_delta=on_delta)
    finally:
        await client.aclose()
    assert deltas and fallback.requests == []


def test_fallback_settings_resolve_in_order_with_the_roles_limits_and_the_providers_own_keys() -> None:
    settings = LLMSettings.model_validate(
        {
            "provider": "openai",
            "timeout_seconds": 20,
            "fallback": [
                {"provider": "anthropic", "max_retries": 1},
                {"provider": "openai", "model": "gpt-4.1", "base_url": "http://127.0.0.1:9/v1", "api_key": "sk-x"},
            ],
        }
    )
    resolved = settings.resolved({"OPENAI_API_KEY": "sk-o", "ANTHROPIC_API_KEY": "sk-a"})
    first, second = resolved.fallback
    assert (first.provider, first.model, first.max_retries, first.timeout_seconds) == (
        "anthropic", "claude-sonnet-4-6", 1, 20
    )  # fmt: skip
    assert first.api_key is not None and first.api_key.get_secret_value() == "sk-a"
    assert (second.model, second.base_url, second.max_retries) == ("gpt-4.1", "http://127.0.0.1:9/v1", 3)
    assert second.api_key is not None and second.api_key.get_secret_value() == "sk-x"
    assert first.fallback == () and second.fallback == ()


def test_a_fallback_without_a_key_is_a_config_error_naming_it() -> None:
    settings = LLMSettings.model_validate({"provider": "openai", "fallback": [{"provider": "anthropic"}]})
    expected = r"llm fallback\[0\] \(provider 'anthropic'\) has no API key: set ANTHROPIC_API_KEY"
    with pytest.raises(ConfigError, match=expected):
        build_llm_client(settings.resolved({"OPENAI_API_KEY": "sk-o"}))


def test_a_fallback_behind_the_offline_test_model_is_refused() -> None:
    settings = LLMSettings.model_validate({"provider": "offline", "fallback": [{"provider": "openai"}]})
    with pytest.raises(ConfigError, match="offline test model, which never fails over"):
        build_llm_client(settings.resolved({"OPENAI_API_KEY": "sk-o"}))
