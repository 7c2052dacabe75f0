"""Tracing: a no-op unless enabled and installed; spans carry their attributes when it is on.

The OpenTelemetry SDK is an optional extra and usually absent from the dev environment, so most
tests stand in small fake modules for it; the last one uses the real SDK when it is installed.
"""

from __future__ import annotations

import sys
import types
from typing import Any

import pytest
import structlog

from agent_runtime.observability import setup_tracing
from agent_runtime.observability.tracing import traces_endpoint
from agent_runtime.settings import Settings

OTEL_MODULES = (
    "opentelemetry.sdk.trace",
    "opentelemetry.sdk.trace.export",
    "opentelemetry.sdk.resources",
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
)


def _settings(**observability: Any) -> Settings:
    return Settings.model_validate({"observability": observability})


class FakeOtel:
    """Records what ``setup_tracing`` builds, in place of the SDK modules."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.exporter_endpoints: list[str | None] = []
        self.shutdowns = 0
        self.resource_attrs: dict[str, Any] = {}

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        fake = self

        class Span:
            def __init__(self, record: dict[str, Any]) -> None:
                self.record = record

            def set_attribute(self, key: str, value: Any) -> None:
                self.record["attributes"][key] = value

            def record_exception(self, exception: BaseException) -> None:
                self.record["exceptions"].append(exception)

        class SpanContext:
            def __init__(self, name: str, attributes: dict[str, Any], **options: Any) -> None:
                self.record: dict[str, Any] = {
                    "name": name,
                    "attributes": dict(attributes),
                    "options": options,
                    "exceptions": [],
                }

            def __enter__(self) -> Span:
                fake.spans.append(self.record)
                return Span(self.record)

            def __exit__(self, *exc: object) -> None:
                return None

        class Tracer:
            def start_as_current_span(self, name: str, attributes: dict[str, Any], **options: Any) -> SpanContext:
                return SpanContext(name, attributes, **options)

        class TracerProvider:
            def __init__(self, resource: Any) -> None:
                self.processors: list[Any] = []

            def add_span_processor(self, processor: Any) -> None:
                self.processors.append(processor)

            def get_tracer(self, name: str) -> Tracer:
                return Tracer()

            def shutdown(self) -> None:
                fake.shutdowns += 1

        class Resource:
            @staticmethod
            def create(attrs: dict[str, Any]) -> str:
                fake.resource_attrs = attrs
                return "resource"

        class OTLPSpanExporter:
            def __init__(self, endpoint: str | None = None) -> None:
                fake.exporter_endpoints.append(endpoint)

        def module(name: str, **attrs: Any) -> types.ModuleType:
            mod = types.ModuleType(name)
            for key, value in attrs.items():
                setattr(mod, key, value)
            return mod

        monkeypatch.setitem(sys.modules, OTEL_MODULES[0], module(OTEL_MODULES[0], TracerProvider=TracerProvider))
        monkeypatch.setitem(
            sys.modules,
            OTEL_MODULES[1],
            module(OTEL_MODULES[1], BatchSpanProcessor=lambda exporter: exporter),
        )
        monkeypatch.setitem(sys.modules, OTEL_MODULES[2], module(OTEL_MODULES[2], Resource=Resource))
        monkeypatch.setitem(sys.modules, OTEL_MODULES[3], module(OTEL_MODULES[3], OTLPSpanExporter=OTLPSpanExporter))


def _hide_otel(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in OTEL_MODULES:
        # A None entry in sys.modules makes the import raise ImportError.
        monkeypatch.setitem(sys.modules, name, None)


def test_tracing_is_a_noop_when_disabled() -> None:
    tracing = setup_tracing(_settings(otel_enabled=False))
    assert not tracing.enabled
    with tracing.span("task.plan", task_id="t1") as span:
        span.set_attribute("steps", 3)
    tracing.shutdown()


def test_enabled_tracing_without_the_sdk_falls_back_to_a_noop_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide_otel(monkeypatch)
    with structlog.testing.capture_logs() as logs:
        tracing = setup_tracing(_settings(otel_enabled=True))
    assert not tracing.enabled
    assert [(e["event"], e["log_level"], e["fix"]) for e in logs] == [
        ("tracing_unavailable", "warning", "pip install 'agent-runtime[otel]'")
    ]
    with tracing.span("task.plan"):
        pass


async def test_spans_carry_attributes_and_skip_none_values(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeOtel()
    fake.install(monkeypatch)
    tracing = setup_tracing(_settings(otel_enabled=True, otel_service_name="svc-a"))
    assert tracing.enabled
    assert fake.resource_attrs == {"service.name": "svc-a"}

    with tracing.span("step.run", task_id="t1", step=2, tool=None) as span:
        span.set_attribute("outcome", "ok")

    assert fake.spans == [
        {
            "name": "step.run",
            "attributes": {"task_id": "t1", "step": 2, "outcome": "ok"},
            "options": {"record_exception": True, "set_status_on_exception": True},
            "exceptions": [],
        }
    ]
    tracing.shutdown()
    tracing.shutdown()
    assert fake.shutdowns == 1
    assert not tracing.enabled


def test_configured_endpoint_is_a_base_url_and_unset_lets_the_exporter_read_the_env(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = FakeOtel()
    fake.install(monkeypatch)
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env-collector:4318")
    with structlog.testing.capture_logs() as logs:
        setup_tracing(_settings(otel_enabled=True, otel_endpoint="http://collector:4318/"))
        setup_tracing(_settings(otel_enabled=True))
    assert fake.exporter_endpoints == ["http://collector:4318/v1/traces", None]
    assert [(e["event"], e["endpoint"]) for e in logs] == [
        ("tracing_enabled", "http://collector:4318/v1/traces"),
        ("tracing_enabled", "http://env-collector:4318"),
    ]


def test_traces_endpoint_keeps_a_full_traces_url() -> None:
    assert traces_endpoint("http://c:4318/v1/traces") == "http://c:4318/v1/traces"
    assert traces_endpoint("http://c:4318") == "http://c:4318/v1/traces"
    assert traces_endpoint(None) is None
    assert traces_endpoint("") is None


async def test_real_sdk_exports_nested_spans_with_attributes_when_installed() -> None:
    pytest.importorskip("opentelemetry.sdk.trace", reason="the otel extra is not installed")
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    tracing = setup_tracing(_settings(otel_enabled=True), span_exporter=exporter)
    with tracing.span("task.execute", task_id="t1"), tracing.span("step.run", step=1):
        pass
    with pytest.raises(RuntimeError), tracing.span("step.run", step=2):
        raise RuntimeError("boom")
    tracing.shutdown()

    finished = exporter.get_finished_spans()
    assert all(s.attributes is not None for s in finished), "every exported span carries its attributes"
    spans = {(s.name, (s.attributes or {}).get("step")): s for s in finished}
    outer = spans[("task.execute", None)]
    inner = spans[("step.run", 1)]
    failed = spans[("step.run", 2)]
    assert outer.attributes is not None
    assert outer.attributes["task_id"] == "t1"
    assert inner.parent is not None
    assert inner.parent.span_id == outer.context.span_id
    assert not failed.status.is_ok
    assert failed.events[0].name == "exception"
