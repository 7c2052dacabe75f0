"""``agent-runtime tasks watch`` across dropped connections: it reconnects with ``Last-Event-ID``,
prints every event once, in order, and exits with the task's code.

The stream is cut mid-frame by the proxy of tests/support/dropping_proxy.py, as in the client's own
reconnect tests (tests/client/test_reconnect.py); here the real command runs through it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import anyio

from tests.operator_cli.cli_runner import CLI, Result
from tests.support.dropping_proxy import dropping_proxy
from tests.support.harness import Live, live_service, make_settings, read_stream

PROMPT = "Write a note named hello saying hi, then read the note hello back."


async def _completed_task(live: Live) -> list[dict[str, Any]]:
    task = await live.submit(PROMPT)
    await live.wait_for(task["id"], "approval_required")
    await live.approve(task["id"], 1)
    return await read_stream(live.client, task["id"], until="task_completed")


async def test_watch_json_reconnects_with_last_event_id_and_prints_each_event_once(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        stored = await _completed_task(live)
        task_id = str(stored[0]["task_id"])
        async with dropping_proxy(live.url, cuts=[2, 3, 1]) as proxy:
            watched = await CLI(proxy.url)("tasks", "watch", task_id, "--json")
    assert watched.code == 0, watched.err
    assert proxy.dropped == 3
    assert proxy.stream_requests == [None, "2", "5", "6"]  # each reconnect resumes after the last event printed
    events = watched.json_lines()
    assert [(e["seq"], e["type"], e["data"]) for e in events] == [(s["seq"], s["type"], s["data"]) for s in stored]
    assert events[-1]["type"] == "task_completed"


async def test_watch_prints_no_event_twice_when_the_service_replays_from_the_start(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        stored = await _completed_task(live)
        task_id = str(stored[0]["task_id"])
        # The proxy hides Last-Event-ID from the service: every reconnect replays from event 1.
        async with dropping_proxy(live.url, cuts=[4, 6], forget_position=True) as proxy:
            watched = await CLI(proxy.url)("tasks", "watch", task_id)
    assert watched.code == 0, watched.err
    assert proxy.stream_requests == [None, "4", "6"]
    printed = [int(m.group(1)) for m in re.finditer(r" #(\d+) ", watched.out)]
    shown = [int(s["seq"]) for s in stored if s["type"] != "text_delta"]  # plain lines leave text deltas out
    assert printed == shown
    assert "task_completed" in watched.out.splitlines()[-1]


async def test_watch_following_a_running_task_through_drops_ends_at_completion_with_exit_0(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        task = await live.submit(PROMPT)
        before = await live.wait_for(task["id"], "approval_required")
        results: list[Result] = []
        async with dropping_proxy(live.url, cuts=[2, 2, 2]) as proxy:
            with anyio.fail_after(60):
                async with anyio.create_task_group() as tg:

                    async def follow() -> None:
                        cli = CLI(proxy.url)
                        results.append(await cli("tasks", "watch", task["id"], "--until-done", "--json"))

                    tg.start_soon(follow)
                    await live.approve(task["id"], 1)
        stored = await read_stream(live.client, task["id"])
    [watched] = results
    assert watched.code == 0, watched.err
    assert proxy.dropped == 3
    assert [int(i) for i in proxy.stream_requests[1:] if i is not None] == [2, 4, 6]
    seqs = [e["seq"] for e in watched.json_lines()]
    assert seqs == [s["seq"] for s in stored] and len(set(seqs)) == len(seqs) > len(before)
    assert watched.json_lines()[-1]["type"] == "task_completed"
