"""Prometheus metrics, owned by one :class:`Metrics` object per app.

Every metric lives in the object's own ``CollectorRegistry``, never in ``prometheus_client``'s
global ``REGISTRY``: ``create_app(settings)`` builds one ``Metrics``, so two apps in one test process
do not collide, and nothing is registered at import time.

The service reports what happened through small typed methods (``observe_step``, ``llm_call``,
``tool_call`` ...); label values are short, bounded strings (outcomes such as ``"ok"``,
``"error"``, ``"timeout"``, ``"cancelled"``; provider, model, server and tool names from the
configuration), never task ids or free text, so the number of series stays bounded.

Task counts by state are not tracked by increments (a restart or another replica would make them
drift): the ``/metrics`` route asks the store for the current counts and hands them to
:meth:`Metrics.set_task_counts` just before :meth:`Metrics.render`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder

NAMESPACE = "agent_runtime"

# Planning and execution are dominated by LLM latency: seconds to minutes.
_LONG_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
# One step: a few LLM turns and tool calls.
_STEP_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# One tool call: milliseconds over stdio, up to the call timeout.
_TOOL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class _TaskCountCollector:
    """``agent_runtime_tasks{state}``: the last counts handed to :meth:`set`.

    A state that was reported once and is missing from a later snapshot is reported as 0, so a
    series drops to zero instead of freezing at its last value or vanishing.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, int] = {}

    def set(self, counts: Mapping[str, int]) -> None:
        with self._lock:
            updated = dict.fromkeys(self._counts, 0)
            updated.update(counts)
            self._counts = updated

    def collect(self) -> Iterable[Metric]:
        family = GaugeMetricFamily(
            f"{NAMESPACE}_tasks", "Tasks in the store by state (all replicas).", labels=["state"]
        )
        with self._lock:
            counts = sorted(self._counts.items())
        for state, count in counts:
            family.add_metric([state], float(count))
        yield family

    def describe(self) -> Iterable[Metric]:
        # Registering must not call collect(): the counts come later, from the store.
        return [GaugeMetricFamily(f"{NAMESPACE}_tasks", "Tasks in the store by state (all replicas).")]


class Metrics:
    """The service's metrics and the registry that holds them. Thread-safe; cheap to call."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self._tasks = _TaskCountCollector()
        r.register(self._tasks)

        self._planning = Histogram(
            "planning_duration_seconds",
            "Time to produce one plan version, by outcome.",
            ["outcome"],
            namespace=NAMESPACE,
            buckets=_LONG_BUCKETS,
            registry=r,
        )
        self._execution = Histogram(
            "execution_duration_seconds",
            "Time to execute an approved plan, from claim to a final state, by outcome.",
            ["outcome"],
            namespace=NAMESPACE,
            buckets=_LONG_BUCKETS,
            registry=r,
        )
        self._step = Histogram(
            "step_duration_seconds",
            "Time to run one plan step, by outcome.",
            ["outcome"],
            namespace=NAMESPACE,
            buckets=_STEP_BUCKETS,
            registry=r,
        )
        self._llm_calls = Counter(
            "llm_calls",
            "LLM requests by provider, model and outcome (retries count separately).",
            ["provider", "model", "outcome"],
            namespace=NAMESPACE,
            registry=r,
        )
        self._llm_input_tokens = Counter(
            "llm_input_tokens",
            "Input (prompt) tokens reported by the provider.",
            ["provider", "model"],
            namespace=NAMESPACE,
            registry=r,
        )
        self._llm_output_tokens = Counter(
            "llm_output_tokens",
            "Output (completion) tokens reported by the provider.",
            ["provider", "model"],
            namespace=NAMESPACE,
            registry=r,
        )
        self._tool_calls = Counter(
            "tool_calls",
            "MCP tool calls by server, tool and outcome.",
            ["server", "tool", "outcome"],
            namespace=NAMESPACE,
            registry=r,
        )
        self._tool_duration = Histogram(
            "tool_call_duration_seconds",
            "MCP tool call round trip, by server and tool.",
            ["server", "tool"],
            namespace=NAMESPACE,
            buckets=_TOOL_BUCKETS,
            registry=r,
        )
        self._mcp_processes = Gauge(
            "mcp_server_processes",
            "MCP server processes alive in this replica, by server.",
            ["server"],
            namespace=NAMESPACE,
            registry=r,
        )
        self._sse_clients = Gauge(
            "sse_clients",
            "Event-stream (SSE) clients connected to this replica.",
            namespace=NAMESPACE,
            registry=r,
        )
        self._lease_takeovers = Counter(
            "lease_takeovers",
            "Tasks claimed by this replica after another worker's lease expired.",
            namespace=NAMESPACE,
            registry=r,
        )

    # --- tasks -----------------------------------------------------------------------------------

    def set_mcp_processes(self, by_server: Mapping[str, int]) -> None:
        """Replace the live MCP server process counts (from the tool pool, just before :meth:`render`)."""
        self._mcp_processes.clear()
        for server, count in by_server.items():
            self._mcp_processes.labels(server=server).set(count)

    def set_task_counts(self, counts: Mapping[str, int]) -> None:
        """Replace the task counts by state (from the store, just before :meth:`render`)."""
        for state, count in counts.items():
            if count < 0:
                raise ValueError(f"task count for state {state!r} is negative: {count}")
        self._tasks.set(counts)

    def observe_planning(self, duration_s: float, outcome: str) -> None:
        """One planning run finished (``outcome``: e.g. ``ok``, ``error``, ``invalid_plan``)."""
        self._planning.labels(outcome=outcome).observe(duration_s)

    def observe_execution(self, duration_s: float, outcome: str) -> None:
        """One plan execution finished (``outcome``: e.g. ``completed``, ``failed``, ``cancelled``)."""
        self._execution.labels(outcome=outcome).observe(duration_s)

    def observe_step(self, duration_s: float, outcome: str) -> None:
        """One step finished (``outcome``: e.g. ``completed``, ``failed``, ``skipped``)."""
        self._step.labels(outcome=outcome).observe(duration_s)

    # --- LLM and tools ---------------------------------------------------------------------------

    def llm_call(
        self,
        provider: str,
        model: str,
        outcome: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
    ) -> None:
        """One LLM request (``outcome``: e.g. ``ok``, ``error``, ``rate_limited``, ``timeout``)."""
        self._llm_calls.labels(provider=provider, model=model, outcome=outcome).inc()
        # Touch the token series even at zero so they exist from the first call on.
        self._llm_input_tokens.labels(provider=provider, model=model).inc(max(input_tokens, 0))
        self._llm_output_tokens.labels(provider=provider, model=model).inc(max(output_tokens, 0))

    def tool_call(self, server: str, tool: str, outcome: str, duration_s: float) -> None:
        """One MCP tool call (``outcome``: e.g. ``ok``, ``tool_error``, ``timeout``, ``unavailable``)."""
        self._tool_calls.labels(server=server, tool=tool, outcome=outcome).inc()
        self._tool_duration.labels(server=server, tool=tool).observe(duration_s)

    # --- streams and leases ----------------------------------------------------------------------

    def sse_client_connected(self) -> None:
        self._sse_clients.inc()

    def sse_client_disconnected(self) -> None:
        self._sse_clients.dec()

    def lease_takeover(self) -> None:
        """This replica claimed a task whose previous lease holder stopped heartbeating."""
        self._lease_takeovers.inc()

    # --- exposition ------------------------------------------------------------------------------

    def render(self, accept: str | None = None) -> tuple[bytes, str]:
        """The exposition payload and its content type.

        ``accept`` is the request's ``Accept`` header: OpenMetrics if the scraper asks for it, else
        the Prometheus text format.
        """
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type
