"""The task page's event stream survives dropped connections: it reconnects with ``Last-Event-ID``
and shows every event once, in order (the stream is cut mid-frame by ``tests/support/dropping_proxy.py``;
a reconnect that replays events the page already has must not show them twice)."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.console.conftest import Console, _origin
from tests.support.dropping_proxy import dropping_proxy


def test_the_progress_log_reconnects_from_the_last_event_id_after_dropped_connections(console: Console) -> None:
    page, service = console.page, console.service
    console.allow_console_error(r"ERR_INCOMPLETE_CHUNKED_ENCODING|ERR_CONNECTION|network error|Failed to fetch")
    task_id = service.submit("Add 2 and 3.")
    with service.client(service.approver) as approver:
        approver.wait(task_id, until=frozenset({"awaiting_approval"}), timeout=30)
        approver.approve(task_id, 1)
        done = approver.wait(task_id, until=frozenset({"completed"}), timeout=30)
    assert done.status == "completed"

    cuts = service.portal.wrap_async_context_manager(dropping_proxy(service.url, cuts=[2, 3]))
    with cuts as proxy:
        console.origins.add(_origin(proxy.url))
        console.sign_in(base=proxy.url)
        page.goto(f"{proxy.url}/console/#/tasks/{task_id}")
        expect(page.locator("#stream-state")).to_contain_text("ended")
        # Each line's events: its own, or a run of text deltas folded into one line.
        spans = page.locator("#events li").evaluate_all(
            "els => els.map(e => [Number(e.dataset.seq), Number(e.dataset.lastSeq || e.dataset.seq)])"
        )
        seqs = [seq for first, last in spans for seq in range(first, last + 1)]
        assert seqs == list(range(1, done.last_event_seq + 1))  # every event once, in order
        expect(page.locator("#events li").last).to_have_attribute("data-type", "task_completed")
        assert proxy.dropped == 2 and len(proxy.stream_requests) == 3
        # Each reconnect names the last event the page had read (Chromium discards what it had
        # received but the page had not read yet when the connection broke, so the position
        # depends on timing; what must hold is that it only moves forward).
        resumed = [int(i) for i in proxy.stream_requests if i is not None]
        assert proxy.stream_requests[0] is None and resumed == sorted(resumed)
        assert all(0 < i < done.last_event_seq for i in resumed)
