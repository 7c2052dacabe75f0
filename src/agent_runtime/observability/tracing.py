"""Optional OpenTelemetry tracing behind a tiny interface.

OpenTelemetry is an optional extra (``pip install 'agent-runtime[otel]'``). :func:`setup_tracing`
returns a :class:`Tracing` whose :meth:`~Tracing.span` is a no-op unless
``observability.otel_enabled`` is true *and* the SDK and the OTLP/HTTP exporter import. The
packages are imported lazily, here only, so the service runs without them and nothing else in the
code base needs to know whether they are present.

Spans go to an OTLP/HTTP collector: ``observability.otel_endpoint`` (a base URL such as
``http://otel-collector:4318``; ``/v1/traces`` is appended) or, when that is unset, the standard
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_ENDPOINT`` variables, which the
exporter reads itself (default ``http://localhost:4318``).

The tracer provider is private to the returned object, not installed as the global provider: two
apps in one process keep their own. ``span()`` is a plain context manager; the current span is kept
in a ``contextvars`` context, so nesting works across ``await`` and per asyncio task.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

import structlog

from agent_runtime.settings import Settings

log = structlog.get_logger(__name__)

AttributeValue = str | bool | int | float | Sequence[str] | Sequence[bool] | Sequence[int] | Sequence[float]

_TRACES_PATH = "/v1/traces"
_OTEL_MODULES = {
    "trace_sdk": "opentelemetry.sdk.trace",
    "export": "opentelemetry.sdk.trace.export",
    "resources": "opentelemetry.sdk.resources",
    "otlp_http": "opentelemetry.exporter.otlp.proto.http.trace_exporter",
}


class SpanLike(Protocol):
    """The part of an OpenTelemetry span the service uses."""

    def set_attribute(self, key: str, value: AttributeValue) -> None: ...

    def record_exception(self, exception: BaseException) -> None: ...


class _NoopSpan:
    def set_attribute(self, key: str, value: AttributeValue) -> None:
        return None

    def record_exception(self, exception: BaseException) -> None:
        return None


class Tracing:
    """Starts spans; a no-op when tracing is off. Build with :func:`setup_tracing`."""

    def __init__(self, tracer: Any = None, provider: Any = None) -> None:
        self._tracer = tracer
        self._provider = provider

    @property
    def enabled(self) -> bool:
        return self._tracer is not None

    @contextmanager
    def span(self, name: str, **attributes: AttributeValue | None) -> Iterator[SpanLike]:
        """A span around the ``with`` block; ``None`` attribute values are left out.

        An exception leaving the block is recorded on the span and marks it as an error, then
        propagates unchanged.
        """
        if self._tracer is None:
            yield _NoopSpan()
            return
        attrs = _clean(attributes)
        with self._tracer.start_as_current_span(
            name, attributes=attrs, record_exception=True, set_status_on_exception=True
        ) as span:
            yield span

    def shutdown(self) -> None:
        """Flush queued spans and stop the exporter. Blocking: from async code use a worker thread."""
        if self._provider is not None:
            self._provider.shutdown()
            self._provider = None
            self._tracer = None


def _clean(attributes: Mapping[str, AttributeValue | None]) -> dict[str, AttributeValue]:
    return {key: value for key, value in attributes.items() if value is not None}


def traces_endpoint(configured: str | None) -> str | None:
    """The OTLP/HTTP traces URL for a configured base URL; ``None`` lets the exporter read the env."""
    if not configured:
        return None
    base = configured.rstrip("/")
    return base if base.endswith(_TRACES_PATH) else base + _TRACES_PATH


def _import_otel() -> dict[str, Any] | None:
    modules: dict[str, Any] = {}
    for key, module_name in _OTEL_MODULES.items():
        try:
            modules[key] = importlib.import_module(module_name)
        except ImportError:
            return None
    return modules


def setup_tracing(settings: Settings, *, span_exporter: Any = None) -> Tracing:
    """Tracing as configured: a real OTLP/HTTP exporter, or a no-op.

    ``span_exporter`` replaces the OTLP exporter (tests pass an in-memory one).
    """
    obs = settings.observability
    if not obs.otel_enabled:
        return Tracing()
    otel = _import_otel()
    if otel is None:
        log.warning(
            "tracing_unavailable",
            reason="observability.otel_enabled is true but the OpenTelemetry SDK is not installed",
            fix="pip install 'agent-runtime[otel]'",
        )
        return Tracing()

    resource = otel["resources"].Resource.create({"service.name": obs.otel_service_name})
    provider = otel["trace_sdk"].TracerProvider(resource=resource)
    if span_exporter is None:
        endpoint = traces_endpoint(obs.otel_endpoint)
        span_exporter = otel["otlp_http"].OTLPSpanExporter(endpoint=endpoint)
        shown = (
            endpoint
            or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4318 (default)")
        )
        log.info("tracing_enabled", exporter="otlp_http", endpoint=shown)
    provider.add_span_processor(otel["export"].BatchSpanProcessor(span_exporter))
    return Tracing(tracer=provider.get_tracer("agent_runtime"), provider=provider)
