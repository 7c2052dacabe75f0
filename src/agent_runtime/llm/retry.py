"""Retries with exponential backoff and jitter, and translation of SDK errors into ours.

The provider SDKs are built with ``max_retries=0`` so this module is the only retry layer.
Retried: 408, 409, 429, 5xx, timeouts, connection errors and overload/server error events inside a
stream. Not retried: 400/404/422 (our
request is wrong) and 401/403 (the key is wrong). A ``Retry-After`` (or ``retry-after-ms``)
header wins over the computed backoff, capped at :attr:`RetryPolicy.max_delay_seconds`.

Error messages never carry anything that looks like a key. The adapters say which SDK exception
classes mean what through :class:`SDKErrors`, so this module imports neither SDK.
"""

from __future__ import annotations

import email.utils
import random
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import anyio
import httpx2
import pydantic
import structlog
from pydantic import BaseModel

from agent_runtime.errors import LLMAuthError, LLMError, LLMRateLimitError, LLMTimeoutError
from agent_runtime.settings import ResolvedLLM

log = structlog.get_logger(__name__)

T = TypeVar("T")

RETRYABLE_STATUS = frozenset({408, 409, 429})
# Provider 401 messages may quote (part of) the key: "Incorrect API key provided: sk-proj-****abcd".
_KEY_LIKE = re.compile(r"\b(?:sk|pk|key|api[-_]?key)[-_][A-Za-z0-9*_.-]{4,}", re.IGNORECASE)
AUTH_STATUS = frozenset({401, 403})
STREAM_RETRYABLE_TYPES = frozenset({"overloaded_error", "api_error", "server_error", "timeout_error"})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_retries: int = 3
    base_delay_seconds: float = 0.5
    max_delay_seconds: float = 30.0

    @classmethod
    def from_settings(cls, resolved: ResolvedLLM) -> RetryPolicy:
        return cls(
            max_retries=resolved.max_retries,
            base_delay_seconds=resolved.retry_base_delay_seconds,
        )

    def backoff(self, attempt: int) -> float:
        """Delay before retry number ``attempt`` (1-based): exponential with "equal jitter"."""
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2.0 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


@dataclass(frozen=True, slots=True)
class SDKErrors:
    """One SDK's exception classes; ``status`` errors carry ``status_code`` and ``response``."""

    base: type[BaseException]
    status: type[BaseException]
    timeout: type[BaseException]
    connection: type[BaseException]


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Parse ``retry-after-ms`` / ``Retry-After`` (seconds or an HTTP date); ``None`` if absent."""
    if not headers:
        return None
    millis = headers.get("retry-after-ms")
    if millis is not None:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def translate_error(exc: BaseException, *, provider: str, errors: SDKErrors) -> LLMError:
    """Map an SDK (or transport) exception to our error family; ``retryable`` says what to do."""
    if isinstance(exc, LLMError):
        return exc
    if isinstance(exc, (errors.timeout, httpx2.TimeoutException)) and not _connection_failed(exc):
        endpoint = _endpoint(exc)
        return LLMTimeoutError(
            f"{provider}: request to {endpoint} timed out", provider=provider, retryable=True,
            details={"endpoint": endpoint},
        )  # fmt: skip
    if isinstance(exc, (errors.connection, httpx2.TransportError)):
        endpoint = _endpoint(exc)
        return LLMError(
            f"{provider}: cannot reach {endpoint}: {_cause(exc)}", provider=provider, retryable=True,
            details={"endpoint": endpoint},
        )  # fmt: skip
    message = _short_message(exc)
    status = int(getattr(exc, "status_code", 0) or 0) if isinstance(exc, errors.status) else 0
    kind = getattr(exc, "type", None)
    details: dict[str, Any] = {"status": status} if status else {}
    if isinstance(kind, str) and kind:
        details["error_type"] = kind
    request_id = getattr(exc, "request_id", None)
    if request_id:
        details["request_id"] = request_id
    if status in AUTH_STATUS:
        text = f"{provider}: authentication failed ({status}): {message}; check the API key"
        return LLMAuthError(text, provider=provider, details=details)
    if status == 429 or (status < 400 and isinstance(kind, str) and "rate_limit" in kind):
        return LLMRateLimitError(
            f"{provider}: rate limited: {message}", provider=provider, retryable=True, details=details
        )
    if status >= 400:
        retryable = status in RETRYABLE_STATUS or status >= 500
        return LLMError(
            f"{provider}: HTTP {status}: {message}", provider=provider, retryable=retryable, details=details
        )
    # An error event inside a streamed 200 response carries only its type.
    retryable = kind in STREAM_RETRYABLE_TYPES
    return LLMError(
        f"{provider}: {type(exc).__name__}: {message}", provider=provider, retryable=retryable, details=details
    )


def schema_mismatch(provider: str, schema: type[BaseModel], exc: pydantic.ValidationError) -> LLMError:
    """A structured reply that does not validate against ``schema`` (not retried: the model chose it)."""
    return LLMError(
        f"{provider}: structured output does not match {schema.__name__}: {exc.error_count()} validation error(s)",
        provider=provider,
    )


def _endpoint(exc: BaseException) -> str:
    """The URL the failed request went to, without user info or query (the SDKs send keys as headers)."""
    try:
        request = getattr(exc, "request", None)
    except RuntimeError:  # httpx2 raises when a transport error carries no request
        request = None
    url = getattr(request, "url", None)
    if not isinstance(url, httpx2.URL):
        return "the provider's endpoint"
    return f"{url.scheme}://{url.netloc.decode('ascii', 'replace')}{url.path}"


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from (or during), outermost first."""
    chain = [exc]
    root = exc
    while root.__cause__ is not None or (root.__context__ is not None and not root.__suppress_context__):
        root = root.__cause__ or root.__context__  # type: ignore[assignment]
        chain.append(root)
    return chain


def _connection_failed(exc: BaseException) -> bool:
    """Whether a "timeout" is really a failed connection: no timeout among its causes, but an
    ``OSError`` (a refused connect) or an aiohttp error (the server closed the connection).

    The SDKs' aiohttp transport maps every ``aiohttp.ClientConnectionError`` to
    ``httpx2.ConnectTimeout``; the cause chain keeps the real reason.
    """
    causes = _causes(exc)[1:]
    if any(isinstance(link, TimeoutError) for link in causes):
        return False
    return any(isinstance(link, OSError) or type(link).__module__.startswith("aiohttp") for link in causes)


def _cause(exc: BaseException) -> str:
    """The innermost cause of a transport failure, e.g. ``ConnectionRefusedError: [Errno 111] …``."""
    root = _causes(exc)[-1]
    text = str(root).strip()
    return f"{type(root).__name__}: {text[:200]}" if text else type(root).__name__


def _short_message(exc: BaseException) -> str:
    """The error's message, shortened, with anything that looks like an API key masked."""
    text = _KEY_LIKE.sub("[redacted]", str(getattr(exc, "message", None) or exc))
    return text if len(text) <= 300 else text[:300] + "..."


def _retry_after_of(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    return retry_after_seconds(headers)


async def call_with_retries(
    attempt: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    provider: str,
    errors: SDKErrors,
    sleep: Callable[[float], Awaitable[None]] = anyio.sleep,
) -> T:
    """Run ``attempt`` until it succeeds, a non-retryable error occurs, or retries run out.

    ``attempt`` may raise SDK exceptions or :class:`LLMError` (with ``retryable`` set as it
    sees fit). SDK and transport errors leave as an :class:`LLMError` whose ``details["attempts"]``
    counts the calls made; anything else (say, from a text-delta callback) passes through as is.
    """
    tries = 0
    while True:
        tries += 1
        try:
            return await attempt()
        except (errors.base, httpx2.TransportError, LLMError) as exc:
            error = translate_error(exc, provider=provider, errors=errors)
            if not error.retryable or tries > policy.max_retries:
                error.details["attempts"] = tries
                if error is exc:
                    raise
                raise error from exc
            hinted = _retry_after_of(exc)
            delay = policy.backoff(tries) if hinted is None else hinted
            delay = min(delay, policy.max_delay_seconds)
            log.warning(
                "llm_retry",
                provider=provider,
                error_code=error.code.value,
                error=error.message,  # translated: keys masked, the endpoint without user info or query
                status=error.details.get("status"),
                attempt=tries,
                delay_seconds=round(delay, 3),
            )
            await sleep(delay)
