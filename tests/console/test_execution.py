"""Decisions during execution in the browser: in-doubt calls (retry, skip with a result, fail the
step), call gates approved and denied, and how the progress log shows tool calls and errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from tests.console.conftest import Console, Service
from tests.support.harness import Live

WAIT_PROMPT = "Wait 2 seconds."


async def _take_the_lease_away(live: Live, task_id: str) -> None:
    """What another replica's takeover does to this one: a new lease epoch (so the worker can record
    nothing more, not even the result of the call it is making) that has already expired (so this
    service's runner claims the task again at once, as it would after the other replica died)."""
    async with live.runtime.store.transaction(task_id) as tx:
        tx.update(
            lease_owner="a-replica-that-died",
            lease_epoch=tx.task.lease_epoch + 1,
            lease_expires_at=tx.now - timedelta(seconds=1),
        )


@pytest.fixture(scope="module")
def in_doubt(service: Service) -> dict[str, str]:
    """Three tasks (one per way to resolve) whose ``example.wait`` call (not safe to repeat here: see
    conftest's registry) lost its worker's lease while it ran: recorded as started, never finished,
    so it is in doubt and the task waits for an operator. The real store, runner and journal; no
    crash needed. Made together: the runner's takeovers overlap.

    The offline model calls ``example.wait`` with ``seconds: 1``: the lease is taken within
    milliseconds of the call's first progress event, well inside that second, and the fixture
    checks that every task did end up waiting for an operator."""
    ids = {action: service.submit(WAIT_PROMPT) for action in ("skip", "retry", "fail")}
    with service.client(service.approver) as approver:
        for task_id in ids.values():
            approver.wait(task_id, until=frozenset({"awaiting_approval"}), timeout=30)
            approver.approve(task_id, 1)
            for event in approver.events(task_id):
                if event.type == "tool_progress":
                    break  # example.wait is running: its start is stored, its end is not
            service.portal.call(_take_the_lease_away, service.live, task_id)
        for task_id in ids.values():
            waiting = approver.wait(task_id, until=frozenset({"needs_attention"}), timeout=30)
            assert waiting.status == "needs_attention", waiting.status
    return ids


def _open(console: Console, task_id: str) -> None:
    console.page.goto(f"{console.service.url}/console/#/tasks/{task_id}")
    expect(console.page.locator("#task-status")).to_have_text("needs_attention")


def test_an_in_doubt_call_is_in_the_inbox_and_skipped_with_a_result_from_the_task_page(
    console: Console, in_doubt: dict[str, str]
) -> None:
    page, service = console.page, console.service
    task_id = in_doubt["skip"]
    console.sign_in()
    card = page.locator(f"#inbox li[data-task-id='{task_id}']")
    expect(card).to_have_attribute("data-kind", "in_doubt")
    expect(card).to_contain_text("in-doubt call")
    expect(card.locator(".call")).to_contain_text("Call in doubt: example.wait(")
    console.shot("inbox-in-doubt")

    card.get_by_role("link").click()
    panel = page.locator("#attention .attention")
    expect(panel).to_contain_text("In-doubt call: example.wait")
    expect(panel.locator("pre")).to_contain_text('"seconds"')
    expect(page.locator("#events li[data-type='tool_call_in_doubt']")).to_have_count(1)
    console.shot("task-in-doubt")
    panel.get_by_label("Result to record when skipping").fill("waited by hand")
    panel.get_by_role("button", name="Skip with this result").click()
    expect(page.locator("#task-status")).to_have_text("completed", timeout=30_000)
    expect(page.locator("#events li[data-type='attention_resolved']")).to_contain_text("skip")
    expect(page.locator("#attention .attention")).to_have_count(0)
    with service.client() as client:
        resolved = [e.data for e in client.events(task_id) if e.type == "attention_resolved"]
    assert [(r["action"], r["actor"]) for r in resolved] == [("skip", "alice")]


def test_an_in_doubt_call_retried_from_the_task_page_runs_again(console: Console, in_doubt: dict[str, str]) -> None:
    page = console.page
    task_id = in_doubt["retry"]
    console.sign_in()
    _open(console, task_id)
    page.locator("#attention .attention").get_by_role("button", name="Retry").click()
    expect(page.locator("#task-status")).to_have_text("completed", timeout=30_000)
    retried = page.locator("#events li[data-type='tool_call_started']").filter(has_text="— retry")
    expect(retried).to_have_count(1)
    expect(page.locator("#events li[data-type='attention_resolved']")).to_contain_text("retry")


def test_failing_an_in_doubt_call_fails_the_task_and_the_log_marks_the_failure_as_an_error(
    console: Console, in_doubt: dict[str, str]
) -> None:
    page = console.page
    task_id = in_doubt["fail"]
    console.sign_in()
    _open(console, task_id)
    page.locator("#attention .attention").get_by_role("button", name="Fail the step").click()
    expect(page.locator("#task-status")).to_have_text("failed", timeout=30_000)
    failed = page.locator("#events li.error[data-type='task_failed']")
    expect(failed).to_have_count(1)
    expect(failed).to_contain_text("in_doubt_failed")
    expect(page.locator("#events li[data-type='attention_resolved']")).to_contain_text("fail")
    expect(page.locator("#events li.error")).to_have_count(1)  # only the failure is marked
    expect(page.locator("#task-error")).to_contain_text("example.wait")
    console.shot("task-failed")


def _gated(console: Console) -> str:
    """A task stopped at the ``gate-echo`` call gate, its page open."""
    page, service = console.page, console.service
    task_id = service.submit("Echo hello.")
    console.sign_in()
    with service.client() as client:
        client.wait(task_id, until=frozenset({"awaiting_approval"}), timeout=30)
    page.goto(f"{service.url}/console/#/tasks/{task_id}")
    page.get_by_role("button", name="Approve plan v1").click()
    expect(page.locator("#attention .gate")).to_contain_text("example.echo", timeout=30_000)
    return task_id


def test_a_call_approved_at_its_gate_runs_as_shown_and_its_arguments_and_result_are_folded_in_the_log(
    console: Console,
) -> None:
    page, service = console.page, console.service
    task_id = _gated(console)
    shown = page.locator("#attention .gate").get_by_label("Arguments (JSON; edit them to approve a changed call)")
    arguments = shown.input_value()
    page.locator("#attention .gate").get_by_role("button", name="Approve call").click()
    expect(page.locator("#task-status")).to_have_text("completed", timeout=30_000)
    expect(page.locator("#events li[data-type='call_decided']")).to_contain_text("approve by alice")

    started = page.locator("#events li[data-type='tool_call_started']").filter(has_text="example.echo")
    expect(started.locator("details")).not_to_have_attribute("open", "")  # folded
    expect(started.locator("summary")).to_contain_text("tool call example.echo (step step-1)")
    expect(started.locator("pre")).to_be_hidden()
    started.locator("summary").click()  # unfolds: the arguments, as JSON
    expect(started.locator("pre")).to_be_visible()
    assert '"text"' in started.locator("pre").inner_text()
    completed = page.locator("#events li[data-type='tool_call_completed']").filter(has_text="example.echo")
    expect(completed).not_to_have_class("error")
    expect(completed.locator("summary")).to_contain_text("example.echo returned in")
    completed.locator("summary").press("Enter")  # the keyboard unfolds it too
    with service.client() as client:
        results = [e.data["result"] for e in client.events(task_id) if e.type == "tool_call_completed"]
    assert len(results) == 1
    expect(completed.locator("pre")).to_have_text(results[0])
    assert results[0] in arguments  # echo returns its text: the call ran with the arguments shown


def test_a_call_denied_with_a_reason_is_not_made_and_the_model_is_told_why(console: Console) -> None:
    page, service = console.page, console.service
    task_id = _gated(console)
    gate = page.locator("#attention .gate")
    gate.get_by_label("Reason (optional; with deny the model is told)").fill("no echoes today")
    gate.get_by_role("button", name="Deny call").click()
    expect(page.locator("#task-status")).to_have_text("completed", timeout=30_000)  # the task goes on
    expect(page.locator("#events li[data-type='call_decided']")).to_contain_text("deny by alice — no echoes today")
    expect(page.locator("#events li[data-type='tool_call_completed']")).to_have_count(0)  # never sent
    # The model's answer, streamed (its deltas merged into one line), quotes the refusal it was given.
    told = page.locator("#events li[data-type='text_delta']")
    expect(told).to_have_count(1)
    expect(told).to_contain_text("example.echo reported an error: an approver denied this call: no echoes today")
    with service.client() as client:
        deltas = [e for e in client.events(task_id) if e.type == "text_delta"]
    expect(told.locator("pre")).to_have_text("".join(d.data["text"] for d in deltas))  # all of them, merged
    assert told.get_attribute("data-seq") == str(deltas[0].seq)


def test_a_tool_error_result_is_marked_as_an_error_in_the_log(console: Console) -> None:
    page, service = console.page, console.service
    task_id = service.submit("Fail with the message broken on purpose.")
    console.sign_in()
    with service.client(service.approver) as approver:
        approver.wait(task_id, until=frozenset({"awaiting_approval"}), timeout=30)
        approver.approve(task_id, 1)
        approver.wait(task_id, timeout=30)
    page.goto(f"{service.url}/console/#/tasks/{task_id}")
    returned = page.locator("#events li[data-type='tool_call_completed']").filter(has_text="example.fail")
    expect(returned).to_have_class("error")
    expect(returned.locator("summary")).to_contain_text("example.fail returned an error in")
    returned.locator("summary").click()
    expect(returned.locator("pre")).to_be_visible()
    expect(returned.locator("pre")).not_to_be_empty()
