"""The operator console in Debian's Chromium: sign in, inbox, task page, decisions, live progress."""

from __future__ import annotations

import re

from playwright.sync_api import Page, Route, expect

from agent_runtime.services.keys import IssuedKey, KeyService
from agent_runtime.store.keys import KeyStore
from tests.console.conftest import BROKEN_SERVER, Console
from tests.support.harness import Live

PROMPT = "Write a note named hello saying hi, then read the note hello back."


def test_sign_in_inbox_revise_diff_approve_and_watch_it_complete(console: Console) -> None:
    page, service = console.page, console.service
    console.sign_in()
    task_id = service.submit(PROMPT, ticket="DEMO-1")

    card = page.locator(f"#inbox li[data-task-id='{task_id}']")  # appears without a reload
    expect(card).to_contain_text("Write a note named hello")
    expect(card).to_contain_text("2 steps · 2 tools")
    expect(card).to_contain_text("plan approval")
    expect(card.locator(".badge.risk")).to_have_text(["destructive"])  # example.write_note
    expect(card).to_contain_text("Risky tools: example.write_note")
    expect(card.locator(".estimate")).to_contain_text("2 tool calls")
    console.shot("inbox")

    card.get_by_role("link").click()
    expect(page.locator("#task-status")).to_have_text("awaiting_approval")
    expect(page.locator("#prompt")).to_have_text(PROMPT)
    expect(page.locator("#main")).to_contain_text("DEMO-1")
    expect(page.locator("#plan-steps > li")).to_have_count(2)

    page.get_by_label("Feedback for the planner").fill("Also add 2 and 3.")
    page.get_by_role("button", name="Ask for a revision").click()
    expect(page.locator("#binding-version")).to_have_text("v2")
    expect(page.get_by_label("From version")).to_have_value("1")
    expect(page.get_by_label("To version")).to_have_value("2")
    added = page.locator("#plan-diff .add")
    expect(added.filter(has_text="example.add")).to_have_count(1)
    expect(page.locator("#plan-diff .del")).to_have_count(1)  # only the summary line changed
    console.shot("task-diff")

    hash_shown = page.locator("#binding-hash").inner_text()
    with service.client() as client:
        assert client.get(task_id).plan.content_hash == hash_shown  # type: ignore[union-attr]
    page.get_by_role("button", name="Approve plan v2").click()
    expect(page.locator("#task-status")).to_have_text("completed", timeout=30_000)
    expect(page.locator("#events li[data-type='task_completed']")).to_have_count(1)
    expect(page.locator("#events li[data-type='tool_call_started']").first).to_contain_text("example.write_note")
    expect(page.locator("#stream-state")).to_contain_text(re.compile("ended"))
    console.shot("task-completed")


def _open_task(console: Console, task_id: str) -> None:
    """Sign in, wait until the task's plan waits for approval, then open its page."""
    console.sign_in()
    with console.service.client() as client:
        client.wait(task_id, until=frozenset({"awaiting_approval"}), timeout=30)
    console.page.goto(f"{console.service.url}/console/#/tasks/{task_id}")
    expect(console.page.locator("#task-status")).to_have_text("awaiting_approval")


def test_reject_with_a_reason(console: Console) -> None:
    page = console.page
    task_id = console.service.submit("Add 2 and 3.")
    _open_task(console, task_id)
    page.get_by_label("Reason for rejecting").fill("not needed any more")
    page.get_by_role("button", name="Reject").click()
    expect(page.locator("#task-status")).to_have_text("rejected")
    expect(page.locator("#events li[data-type='task_rejected']")).to_contain_text("not needed any more")
    expect(page.get_by_role("button", name="Approve plan v1")).to_have_count(0)
    with console.service.client() as client:
        assert client.get(task_id).error is not None or client.get(task_id).status == "rejected"


def test_plan_edit_shows_the_servers_validation_error_next_to_the_field_then_saves_a_new_version(
    console: Console,
) -> None:
    page = console.page
    console.allow_console_error(r"status of 422")  # Chromium logs the refused PUT; the page handles it
    task_id = console.service.submit(PROMPT)
    _open_task(console, task_id)
    page.get_by_role("button", name="Edit the plan").click()
    editor = page.locator("#plan-editor")
    expect(editor.locator("fieldset.step")).to_have_count(2)

    page.get_by_role("button", name="Add a step").click()
    new_id = page.locator("#edit-step-2-id")
    expect(new_id).to_be_focused()
    new_id.fill("bad id")
    page.locator("#edit-step-2-title").fill("Echo done")
    page.locator("#edit-step-2-instruction").fill("Echo the word done.")
    page.locator("#edit-step-2-tools").get_by_label("example.echo").check()
    page.get_by_role("button", name="Save as a new version").click()

    error = editor.locator("[data-field='steps.2.id']")
    expect(error).to_contain_text("step id 'bad id' must be 1-40 letters")
    expect(new_id).to_have_attribute("aria-invalid", "true")
    expect(new_id).to_be_focused()
    console.shot("editor-validation-error")

    new_id.fill("done")
    new_id.dispatch_event("change")
    page.locator("#edit-step-2-depends_on").get_by_label("step-1").check()
    page.get_by_role("button", name="Move step 3 up").click()  # now the second step
    expect(page.locator("#edit-step-1-id")).to_have_value("done")
    page.get_by_role("button", name="Remove step 3").click()  # the old step-2 (read the note)
    expect(editor.locator("fieldset.step")).to_have_count(2)
    page.get_by_role("button", name="Save as a new version").click()

    expect(page.locator("#binding-version")).to_have_text("v2")
    expect(page.locator("#plan-editor")).to_have_count(0)
    with console.service.client() as client:
        versions = client.plan_versions(task_id)
    assert [v.version for v in versions] == [1, 2]
    steps = versions[1].plan.steps
    assert [(s.id, s.tools, s.depends_on) for s in steps] == [
        ("step-1", ["example.write_note"], []),
        ("done", ["example.echo"], ["step-1"]),
    ]
    assert versions[1].author == "operator:alice"
    expect(page.locator("#plan-diff .del").filter(has_text="Read the note hello back")).not_to_have_count(0)
    expect(page.locator("#plan-diff .add").filter(has_text="step done: Echo done")).to_have_count(1)


def test_cancel_from_the_task_page(console: Console) -> None:
    page = console.page
    task_id = console.service.submit("Add 2 and 3.")
    _open_task(console, task_id)
    page.get_by_text("Cancel this task").click()
    page.get_by_label("Reason (optional)").fill("changed my mind")
    page.get_by_role("button", name="Cancel task").click()
    expect(page.locator("#task-status")).to_have_text("cancelled")
    expect(page.locator("#events li[data-type='task_cancelled']")).to_have_count(1)
    expect(page.get_by_role("button", name="Cancel task")).to_have_count(0)


def test_tasks_list_filters_by_status_and_pages(console: Console) -> None:
    page, service = console.page, console.service
    ids = [service.submit(f"Echo page {n}.") for n in range(2)]
    with service.client() as client:
        for task_id in ids:
            client.cancel(task_id, "for the list test")
    console.sign_in()
    page.get_by_role("link", name="Tasks").click()
    expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    page.get_by_label("Status").select_option("cancelled")
    expect(page).to_have_url(re.compile(r"#/tasks\?status=cancelled$"))
    rows = page.locator("tbody tr")
    expect(rows.locator("td:nth-child(2)").filter(has_not_text="cancelled")).to_have_count(0)
    expect(rows.filter(has_text=ids[0])).to_have_count(1)

    page.goto(f"{service.url}/console/#/tasks?status=cancelled&limit=1")
    expect(rows).to_have_count(1)
    first = rows.first.locator("a").inner_text()
    assert first == ids[1]  # newest first
    page.get_by_role("link", name="Next page").click()
    expect(rows).to_have_count(1)
    expect(rows.first.locator("a")).to_have_text(ids[0])
    console.shot("tasks")


def test_tools_page_shows_catalogue_servers_the_stderr_of_a_failed_start_and_the_pool(console: Console) -> None:
    page = console.page
    console.sign_in()
    page.get_by_role("link", name="Tools").click()
    catalogue = page.get_by_role("table", name="Tool catalogue")
    expect(catalogue).to_contain_text("example.echo")
    expect(catalogue).to_contain_text("example.write_note")
    servers = page.get_by_role("list", name="Tool servers").locator("li")
    example = servers.filter(has=page.get_by_role("heading", name="example", exact=False)).filter(has_text="ok")
    expect(example).to_have_count(1)
    broken = servers.filter(has_text="broken")
    expect(broken.locator(".badge")).to_have_text("unavailable")
    tail = broken.locator("details")
    expect(tail.locator("summary")).to_have_text("Error and stderr tail")
    expect(tail.locator("pre")).to_contain_text(BROKEN_SERVER)  # what the server wrote before it exited

    pool = page.get_by_role("table", name="Process pool")
    expect(pool.locator("tr[data-key='max_server_processes'] th")).to_have_text("max server processes")
    expect(pool.locator("tr[data-key='max_server_processes'] td")).to_have_text(re.compile(r"^[0-9]+$"))
    expect(pool.locator("tr[data-key='warm handed_out'] th")).to_have_text("warm handed out")
    warm = page.get_by_role("table", name="Warm instances per server")
    expect(warm.locator("thead th")).to_have_text(["Server", "Target", "Ready", "Starting", "Last error"])
    expect(warm.locator("tbody td")).to_have_text("No server keeps warm instances.")  # prewarm: 0
    console.shot("tools")


def _assert_no_sideways_scroll(page: Page, what: str) -> None:
    wide = page.evaluate(
        "[...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > innerWidth + 1)"
        ".map(e => e.tagName + '#' + e.id + '.' + e.className).slice(0, 5)"
    )
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), (
        f"{what} scrolls sideways on a phone: {wide}"
    )


def test_phone_sized_viewport_keyboard_sign_in_and_approve(console: Console) -> None:
    page, service = console.page, console.service
    page.set_viewport_size({"width": 390, "height": 844})
    task_id = service.submit("Add 2 and 3.")
    console.open()
    expect(page.get_by_label("API key")).to_be_focused()
    page.keyboard.type(service.approver)
    page.keyboard.press("Enter")  # the form submits from the keyboard
    card = page.locator(f"#inbox li[data-task-id='{task_id}']")
    expect(card).to_be_visible()
    _assert_no_sideways_scroll(page, "the inbox")
    console.shot("phone-inbox")
    page.get_by_role("link", name="Tasks").click()
    expect(page.locator("tbody tr").first).to_be_visible()
    _assert_no_sideways_scroll(page, "the tasks list")
    table = page.get_by_role("table", name="Tasks, newest first")
    assert table.evaluate("t => t.scrollWidth <= t.parentElement.clientWidth"), "the tasks table scrolls sideways"
    console.shot("phone-tasks")
    page.get_by_role("link", name="Inbox").click()
    card.get_by_role("link").focus()
    page.keyboard.press("Enter")
    approve = page.get_by_role("button", name="Approve plan v1")
    expect(approve).to_be_visible()
    _assert_no_sideways_scroll(page, "the task page")
    console.shot("phone-task")
    page.get_by_role("button", name="Edit the plan").click()
    expect(page.locator("#plan-editor fieldset.step")).to_have_count(1)
    _assert_no_sideways_scroll(page, "the plan editor")
    console.shot("phone-editor")
    page.get_by_role("button", name="Approve plan v1").focus()
    page.keyboard.press("Enter")
    expect(page.locator("#task-status")).to_have_text("completed", timeout=30_000)


def test_a_refused_key_keeps_the_operator_on_the_sign_in_form(console: Console) -> None:
    page = console.page
    console.allow_console_error(r"status of 401")
    console.open()
    expect(page.get_by_role("button", name="Sign in with OpenID Connect")).to_be_visible()
    console.shot("sign-in")
    page.get_by_label("API key").fill("ar_not-a-real-key")
    page.get_by_role("button", name="Sign in", exact=True).click()
    expect(page.get_by_role("alert")).to_contain_text("That key was refused")
    expect(page.get_by_role("navigation", name="Console sections")).to_be_hidden()
    assert page.evaluate("sessionStorage.length") == 0


def test_a_call_gate_shows_the_call_and_approves_it_with_edited_arguments(console: Console) -> None:
    page, service = console.page, console.service
    console.allow_console_error(r"status of 422")  # the first edit names an argument the tool does not take
    task_id = service.submit("Echo hello.")
    _open_task(console, task_id)
    page.get_by_role("button", name="Approve plan v1").click()

    gate = page.locator("#attention .gate")
    expect(gate).to_contain_text("example.echo", timeout=30_000)
    expect(gate).to_contain_text("gate-echo")
    expect(page.locator("#task-status")).to_have_text("needs_attention")
    expect(page.locator("#task-gate")).to_contain_text("a decision on a tool call")
    arguments = gate.get_by_label("Arguments (JSON; edit them to approve a changed call)")
    assert "text" in arguments.input_value()
    console.shot("call-gate")

    arguments.fill("{not json")
    gate.get_by_role("button", name="Approve with edits").click()
    expect(gate.locator("[data-field='arguments']")).to_contain_text("Not a JSON object")
    arguments.fill('{"nope": 1}')
    gate.get_by_role("button", name="Approve with edits").click()
    expect(gate.locator("[data-field='arguments']")).not_to_be_empty()  # the service's schema check
    expect(arguments).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#task-status")).to_have_text("needs_attention")

    page.goto(f"{service.url}/console/#/inbox")
    card = page.locator(f"#inbox li[data-task-id='{task_id}']")
    expect(card).to_have_attribute("data-kind", "call")
    expect(card).to_contain_text("example.echo(")
    card.get_by_role("link").click()
    gate = page.locator("#attention .gate")
    gate.get_by_label("Arguments (JSON; edit them to approve a changed call)").fill('{"text": "edited in the console"}')
    gate.get_by_role("button", name="Approve with edits").click()
    expect(page.locator("#task-status")).to_have_text("completed", timeout=30_000)
    expect(page.locator("#events li[data-type='call_decided']")).to_contain_text("edit by alice")
    completed = page.locator("#events li[data-type='tool_call_completed']")
    expect(completed.filter(has_text="example.echo")).to_have_count(1)
    with service.client() as client:
        events = list(client.events(task_id))
    results = [e.data["result"] for e in events if e.type == "tool_call_completed"]
    assert any("edited in the console" in r for r in results), results


def test_a_spent_budget_is_raised_from_the_task_page_and_the_task_goes_on(console: Console) -> None:
    page, service = console.page, console.service
    task_id = service.submit("Multiply 2 by 3, then multiply 4 by 5.")
    _open_task(console, task_id)
    expect(page.locator("#task-usage")).to_contain_text("tool calls 0 of 1")
    page.get_by_role("button", name="Approve plan v1").click()
    budget = page.locator("#attention .budget")
    expect(budget).to_contain_text("Budget spent", timeout=30_000)
    expect(page.locator("#task-status")).to_have_text("needs_attention")
    expect(page.locator("#task-gate")).to_contain_text("a raised budget")
    expect(page.locator("#events li[data-type='budget_exceeded']")).to_have_count(1)

    page.get_by_role("link", name="Inbox").click()
    card = page.locator(f"#inbox li[data-task-id='{task_id}']")
    expect(card).to_have_attribute("data-kind", "budget")
    expect(card).to_contain_text("budget gate")
    expect(card.locator(".usage")).to_contain_text("tool calls 1 of 1")
    console.shot("inbox-budget")
    card.get_by_role("link").click()
    budget = page.locator("#attention .budget")
    budget.get_by_label("Tool calls").fill("5")
    page.get_by_role("button", name="Raise the budget").click()
    expect(page.locator("#task-status")).to_have_text("completed", timeout=30_000)
    expect(page.locator("#events li[data-type='budget_raised']")).to_have_count(1)
    expect(page.locator("#task-usage")).to_contain_text("of 5")


async def _issue(live: Live) -> IssuedKey:
    return await KeyService(KeyStore(live.runtime.store.engine)).create(
        subject="bob", tenant="default", roles=["approver"]
    )


async def _revoke(live: Live, key_id: str) -> None:
    await KeyService(KeyStore(live.runtime.store.engine)).revoke(key_id)


def test_a_key_revoked_while_a_task_page_opens_its_stream_sends_the_operator_to_sign_in(console: Console) -> None:
    page, service = console.page, console.service
    console.allow_console_error(r"status of 401")
    task_id = service.submit("Add 6 and 7.")
    issued = service.portal.call(_issue, service.live)
    console.sign_in(issued.key)
    with service.client() as client:
        client.wait(task_id, until=frozenset({"awaiting_approval"}), timeout=30)

    def revoke_then_connect(route: Route) -> None:
        # The task and its plan were read with the key; the stream is the first request it fails.
        service.portal.call(_revoke, service.live, issued.record.id)
        route.continue_()

    page.route(re.compile(r"/v1/tasks/[^/]+/stream$"), revoke_then_connect)
    page.goto(f"{service.url}/console/#/tasks/{task_id}")
    expect(page.get_by_label("API key")).to_be_visible()
    expect(page.locator("#main")).to_contain_text("Your key or token was refused or has expired")
    expect(page.get_by_role("navigation", name="Console sections")).to_be_hidden()
    assert page.evaluate("sessionStorage.getItem('agent-runtime.token')") is None


def test_choosing_plan_versions_and_comparing_two_that_are_not_the_latest_pair(console: Console) -> None:
    page, service = console.page, console.service
    task_id = service.submit(PROMPT)
    _open_task(console, task_id)
    for version, feedback in ((2, "Also add 2 and 3."), (3, "Also multiply 4 by 5.")):
        page.get_by_label("Feedback for the planner").fill(feedback)
        page.get_by_role("button", name="Ask for a revision").click()
        expect(page.locator("#binding-version")).to_have_text(f"v{version}")
    with service.client() as client:
        plans = {v.version: v.plan for v in client.plan_versions(task_id)}
    assert sorted(plans) == [1, 2, 3]

    shown = page.get_by_label("Show plan version")
    expect(shown).to_have_value("3")
    expect(page.locator("#plan")).to_contain_text("· current")
    shown.select_option("1")
    expect(shown).to_be_focused()  # the keyboard stays on the control
    steps = page.locator("#plan-steps > li")
    expect(steps).to_have_count(len(plans[1].steps))
    expect(steps.locator("strong")).to_have_text([s.title for s in plans[1].steps])
    expect(page.locator("#plan")).not_to_contain_text("· current")
    expect(page.locator("#binding-version")).to_have_text("v3")  # what is approved does not follow the view

    expect(page.get_by_label("From version")).to_have_value("2")  # the default: the last two
    page.get_by_label("From version").select_option("1")
    expect(page.get_by_role("region", name="Differences from v1 to v3")).to_be_visible()
    expect(page.get_by_label("From version")).to_be_focused()
    added = page.locator("#plan-diff .add")
    removed = page.locator("#plan-diff .del")
    new_tools = {t for s in plans[3].steps for t in s.tools} - {t for s in plans[1].steps for t in s.tools}
    assert new_tools, plans
    for tool in new_tools:
        expect(added.filter(has_text=tool)).not_to_have_count(0)
    expect(removed.filter(has_text=f"summary: {plans[1].summary}")).to_have_count(1)
    expect(added.filter(has_text=f"summary: {plans[3].summary}")).to_have_count(1)
    summary = page.locator("#diff-summary")
    expect(summary).to_have_text(re.compile(r"^[0-9]+ lines added, [0-9]+ removed\.$"))
    counts = summary.inner_text()
    assert counts == f"{added.count()} lines added, {removed.count()} removed."
    page.get_by_label("To version").select_option("1")
    expect(summary).to_have_text("The same version.")
    expect(added).to_have_count(0)
    console.shot("task-versions")
