"""Metrics (Prometheus) and optional tracing (OpenTelemetry), built per app, never at import time."""

from agent_runtime.observability.metrics import Metrics
from agent_runtime.observability.tracing import SpanLike, Tracing, setup_tracing

__all__ = ["Metrics", "SpanLike", "Tracing", "setup_tracing"]
