"""Metrics: series names, labels and values as a Prometheus scraper would parse them."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from agent_runtime.observability import Metrics

Labels = tuple[tuple[str, str], ...]


def _samples(metrics: Metrics) -> dict[tuple[str, Labels], float]:
    payload, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    found: dict[tuple[str, Labels], float] = {}
    for family in text_string_to_metric_families(payload.decode("utf-8")):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def _value(metrics: Metrics, name: str, **labels: str) -> float:
    """The value of ``agent_runtime_<name>{labels}``."""
    return _samples(metrics)[(f"agent_runtime_{name}", tuple(sorted(labels.items())))]


def test_task_counts_are_reported_by_state_and_dropped_states_fall_to_zero() -> None:
    metrics = Metrics()
    metrics.set_task_counts({"planning": 2, "awaiting_approval": 1})
    assert _value(metrics, "tasks", state="planning") == 2
    assert _value(metrics, "tasks", state="awaiting_approval") == 1

    metrics.set_task_counts({"completed": 3})
    assert _value(metrics, "tasks", state="planning") == 0
    assert _value(metrics, "tasks", state="awaiting_approval") == 0
    assert _value(metrics, "tasks", state="completed") == 3


def test_negative_task_count_is_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        Metrics().set_task_counts({"planning": -1})


def test_durations_are_histograms_labelled_by_outcome() -> None:
    metrics = Metrics()
    metrics.observe_planning(1.5, "ok")
    metrics.observe_execution(12.0, "completed")
    metrics.observe_step(0.2, "completed")
    metrics.observe_step(0.3, "completed")
    metrics.observe_step(4.0, "failed")

    assert _value(metrics, "planning_duration_seconds_count", outcome="ok") == 1
    assert _value(metrics, "planning_duration_seconds_sum", outcome="ok") == 1.5
    assert _value(metrics, "execution_duration_seconds_count", outcome="completed") == 1
    assert _value(metrics, "step_duration_seconds_count", outcome="completed") == 2
    assert _value(metrics, "step_duration_seconds_sum", outcome="completed") == pytest.approx(0.5)
    assert _value(metrics, "step_duration_seconds_count", outcome="failed") == 1
    assert _value(metrics, "step_duration_seconds_bucket", outcome="completed", le="0.25") == 1
    assert _value(metrics, "step_duration_seconds_bucket", outcome="failed", le="+Inf") == 1


def test_llm_calls_and_tokens_are_counted_by_provider_and_model() -> None:
    metrics = Metrics()
    metrics.llm_call("openai", "gpt-4.1-mini", "ok", input_tokens=100, output_tokens=20)
    metrics.llm_call("openai", "gpt-4.1-mini", "ok", input_tokens=50, output_tokens=5)
    metrics.llm_call("anthropic", "claude-sonnet-4-5", "rate_limited")

    assert _value(metrics, "llm_calls_total", provider="openai", model="gpt-4.1-mini", outcome="ok") == 2
    assert (
        _value(
            metrics,
            "llm_calls_total",
            provider="anthropic",
            model="claude-sonnet-4-5",
            outcome="rate_limited",
        )
        == 1
    )
    assert _value(metrics, "llm_input_tokens_total", provider="openai", model="gpt-4.1-mini") == 150
    assert _value(metrics, "llm_output_tokens_total", provider="openai", model="gpt-4.1-mini") == 25
    # A failed call still creates its token series, at zero.
    assert _value(metrics, "llm_input_tokens_total", provider="anthropic", model="claude-sonnet-4-5") == 0


def test_tool_calls_are_counted_and_timed_by_server_and_tool() -> None:
    metrics = Metrics()
    metrics.tool_call("files", "read_file", "ok", 0.004)
    metrics.tool_call("files", "read_file", "tool_error", 0.006)
    metrics.tool_call("files", "read_file", "ok", 0.002)

    labels = {"server": "files", "tool": "read_file"}
    assert _value(metrics, "tool_calls_total", outcome="ok", **labels) == 2
    assert _value(metrics, "tool_calls_total", outcome="tool_error", **labels) == 1
    assert _value(metrics, "tool_call_duration_seconds_count", **labels) == 3
    assert _value(metrics, "tool_call_duration_seconds_sum", **labels) == pytest.approx(0.012)
    assert _value(metrics, "tool_call_duration_seconds_bucket", le="0.005", **labels) == 2


def test_gauges_follow_processes_and_sse_clients_and_takeovers_are_counted() -> None:
    metrics = Metrics()
    metrics.set_mcp_processes({"files": 3, "old": 1})
    metrics.set_mcp_processes({"files": 1, "git": 1})  # the pool's counts at the next scrape
    metrics.sse_client_connected()
    metrics.sse_client_connected()
    metrics.sse_client_disconnected()
    metrics.lease_takeover()

    assert _value(metrics, "mcp_server_processes", server="files") == 1
    assert _value(metrics, "mcp_server_processes", server="git") == 1
    assert "old" not in metrics.render(None)[0].decode()  # a server gone from the pool leaves no series
    assert _value(metrics, "sse_clients") == 1
    assert _value(metrics, "lease_takeovers_total") == 1


def test_unlabelled_series_exist_before_anything_happens() -> None:
    samples = _samples(Metrics())
    assert samples[("agent_runtime_sse_clients", ())] == 0
    assert samples[("agent_runtime_lease_takeovers_total", ())] == 0


def test_two_instances_keep_separate_registries() -> None:
    first, second = Metrics(), Metrics()
    first.lease_takeover()
    assert _value(first, "lease_takeovers_total") == 1
    assert _value(second, "lease_takeovers_total") == 0


def test_openmetrics_is_served_when_the_scraper_asks_for_it() -> None:
    metrics = Metrics()
    metrics.lease_takeover()
    payload, content_type = metrics.render("application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert payload.rstrip().endswith(b"# EOF")
