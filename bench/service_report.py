"""Reading the results of ``bench_service_load.py``: phases from event timestamps, CPU per task, the
printed summary of a run, cProfile top costs."""

from __future__ import annotations

import io
import json
import pstats
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.http_client import HttpClient
from bench.stats import summary


def ts(value: str) -> float:
    return datetime.fromisoformat(value).timestamp()


PHASES = (
    ("queued", "task_created", "planning_started"),
    ("planning (1 LLM call)", "planning_started", "plan_proposed"),
    ("plan -> approved (policy)", "plan_proposed", "task_approved"),
    ("approved -> execution", "task_approved", "execution_started"),
    ("server open", "execution_started", "step_started"),
    ("step start -> tool call (1 LLM call)", "step_started", "tool_call_started"),
    ("tool call", "tool_call_started", "tool_call_completed"),
    ("answer + summary (2 LLM calls)", "tool_call_completed", "task_completed"),
)


async def phases(client: HttpClient, ids: list[str], sample: int = 100) -> dict[str, Any]:
    """Median and p95 of each phase of a task, from the event timestamps of up to ``sample`` tasks
    (each finished task's stream replays its events and ends); also how many were run twice."""
    step = max(1, len(ids) // sample)
    spans: dict[str, list[float]] = {name: [] for name, _, _ in PHASES}
    rerun: list[str] = []
    for task_id in ids[::step]:
        first: dict[str, float] = {}
        epochs = set()
        async with client.events(f"/v1/tasks/{task_id}/stream") as stream:
            async for event in stream:
                data = json.loads(event.data) if event.data else {}
                if "created_at" in data:
                    first.setdefault(event.event, ts(data["created_at"]))
                if event.event in ("planning_started", "execution_started"):
                    epochs.add((event.event, data.get("epoch", event.id)))
        if len(epochs) > 2:
            rerun.append(task_id)
        for name, start, end in PHASES:
            if start in first and end in first:
                spans[name].append((first[end] - first[start]) * 1000)
    out: dict[str, Any] = {name: summary(v) for name, v in spans.items() if v}
    out["tasks_sampled"] = len(ids[::step])
    out["sampled_ids"] = ids[::step]
    out["tasks_with_more_than_one_planning_or_execution_start"] = len(rerun)
    out["rerun_ids"] = rerun
    return out


def top_costs(profile: Path, limit: int = 30) -> str:

    out = io.StringIO()
    stats = pstats.Stats(str(profile), stream=out)
    stats.sort_stats("tottime").print_stats(limit)
    stats.sort_stats("cumulative").print_stats(limit)
    return out.getvalue()


def _range(s: dict[str, float] | None) -> str:
    if not s or not s.get("n"):
        return "-"
    return f"{s['min']:.0f} to {s['max']:.0f} ms (p50 {s['p50']:.0f}, n={s['n']:.0f})"


def derived(tasks: int, usage: dict[str, Any]) -> dict[str, float]:
    """CPU per task by process, the cores other work on the machine took, and the ceiling the
    service's CPU per task sets on one core (its event loop, inline SQLite included, is one thread)."""
    cpu = usage["cpu_s"]
    ours = cpu["service"] + cpu["service_children_seen"] + cpu["fake_llm"] + cpu["client"]
    return {
        "service_cpu_ms_per_task": cpu["service"] / tasks * 1000,
        "children_cpu_ms_per_task": cpu["service_children_seen"] / tasks * 1000,
        "fake_llm_and_client_cpu_ms_per_task": (cpu["fake_llm"] + cpu["client"]) / tasks * 1000,
        "other_work_cores": max(0.0, cpu["machine_busy"] - ours) / usage["wall_s"],
        "service_one_core_ceiling_tasks_per_s": tasks / cpu["service"] if cpu["service"] else float("nan"),
    }


def describe(row: str, r: dict[str, Any]) -> str:
    u = r["usage"]
    d = r["derived"] = derived(r["tasks"], u)
    cost = (
        f"CPU per task: service {d['service_cpu_ms_per_task']:.1f} ms (one core: "
        f"{d['service_one_core_ceiling_tasks_per_s']:.0f} tasks/s), children {d['children_cpu_ms_per_task']:.1f} ms, "
        f"fake LLM + client {d['fake_llm_and_client_cpu_ms_per_task']:.1f} ms; other work on the machine "
        f"{d['other_work_cores']:.2f} cores"
    )
    cpu = ", ".join(f"{k} {v:.1f}" for k, v in u["cpu_s"].items())
    rss = (
        f"service peak RSS {u['peak_rss_mb']:.0f} MB, children RSS {u['peak_children_rss_mb']:.0f} MB, "
        f"PSS {u['peak_children_pss_mb']:.0f} MB "
        f"(at most {u['peak_children']} alive)"
    )
    if row == "warm":
        s, c = r["server_ms"], r["client_ms"]
        return (
            f"approve -> first tool call: server p50 {s['p50']:.1f} ms, p95 {s['p95']:.1f} ms, max {s['max']:.1f}; "
            f"client p50 {c['p50']:.1f}, p95 {c['p95']:.1f}; claim p50 {r['claim_ms']['p50']:.1f}, servers p50 "
            f"{r['servers_ms']['p50']:.1f}; warm handed out {r['handed_out']}/{r['tasks']}, missed {r['missed']}; "
            f"{rss}; CPU s: {cpu}; {cost}"
        )
    t = r["task_ms"]
    ph = r["phases_ms"]
    parts = "; ".join(f"{k} {v['p50']:.0f}/{v['p95']:.0f}" for k, v in ph.items() if isinstance(v, dict))
    return (
        f"phases p50/p95 ms (of {ph['tasks_sampled']} tasks; "
        f"{ph['tasks_with_more_than_one_planning_or_execution_start']} started twice): {parts}\n  "
        f"{r['statuses']} in {r['server_wall_s']:.2f} s: {r['tasks_per_s']:.1f} tasks/s (client wall "
        f"{r['client_wall_s']:.2f} s: {r['client_tasks_per_s']:.1f}/s); task created -> finished "
        f"p50 {t['p50']:.0f} ms, "
        f"p95 {t['p95']:.0f}, max {t['max']:.0f}; submit p50 {r['submit_ms']['p50']:.0f} ms, max "
        f"{r['submit_ms']['max']:.0f}; peak unfinished {r['peak_unfinished_tasks']}; {rss}; CPU s: {cpu} "
        f"(machine busy {u['machine_busy_cores']:.2f} cores); submit errors {r['submit_error_count']}, "
        f"stalled {r['stalled']}, service log errors {r['service_log_error_count']}, warnings "
        f"{r['service_log_warnings']}; slowest submits {r['slowest_submits'][:3]}; connections "
        f"{r['connections_opened']}; workspaces left {r['workspaces_left_after_3s']}, children alive "
        f"{r['service_children_after_3s']}; lease lost on renewal, of the sampled tasks: {r.get('lease_lost_sampled')} "
        f"(of which started twice: {r.get('lease_lost_sampled_and_rerun')}), logged this long after the task "
        f"finished: {_range(r.get('lease_lost_ms_after_task_finished'))}; {cost}"
    )
