"""The inbox and the task page as time passes (expiry and waiting times count down and up between
polls, under Playwright's fake clock), and the inbox past its first page."""

from __future__ import annotations

import re

from playwright.sync_api import expect

from tests.console.conftest import Console


def test_time_left_before_expiry_and_time_waiting_move_with_the_clock(console: Console) -> None:
    page, service = console.page, console.service
    task_id = service.submit("Add 4 and 5.", expiring="yes")  # the policy's "expiring" rule: 2 h
    with service.client() as client:
        client.wait(task_id, until=frozenset({"awaiting_approval"}), timeout=30)
    page.clock.install()  # the page's clock runs on from now, and the test can move it forward
    console.sign_in()
    card = page.locator(f"#inbox li[data-task-id='{task_id}']")
    expiry = card.locator(".badge.expiry")
    expect(expiry).to_have_text("expires in 1 h 59 min")
    expect(card).to_contain_text("rule: expiring")
    expect(card).to_contain_text(re.compile(r"waiting [0-9]+ s ago"))

    page.clock.fast_forward("30:00")  # the inbox's items are unchanged: only the times move
    expect(expiry).to_have_text("expires in 1 h 29 min")
    expect(card).to_contain_text("waiting 30 min ago")
    expect(expiry).not_to_have_class(re.compile(r"\brisk\b"))

    card.get_by_role("link").click()
    gate = page.locator("#task-gate")
    expect(gate).to_contain_text("a plan approval · rule expiring")
    expect(gate).to_contain_text("expires in 1 h 29 min (then reject)")
    expect(page.locator("#plan-gate")).to_contain_text("expires in 1 h 29 min")
    page.clock.fast_forward("20:00")
    expect(gate).to_contain_text("expires in 1 h 9 min (then reject)")
    expect(page.locator("#plan-gate")).to_contain_text("expires in 1 h 9 min")

    page.get_by_role("link", name="Inbox").click()
    page.clock.fast_forward("01:10:00")  # past the deadline on the page's clock (not the service's)
    expect(expiry).to_have_text("expired")
    expect(expiry).to_have_class(re.compile(r"\brisk\b"))
    with service.client() as client:
        assert client.get(task_id).status == "awaiting_approval"


def test_the_inbox_shows_more_than_its_first_page_on_request(console: Console) -> None:
    page, service = console.page, console.service
    ids = [service.submit(f"Add {n} and 10.") for n in range(3)]
    with service.client() as client:
        for task_id in ids:
            client.wait(task_id, until=frozenset({"awaiting_approval"}), timeout=30)
    console.sign_in()
    page.goto(f"{service.url}/console/#/inbox?limit=2")
    cards = page.locator("#inbox > li.card")
    expect(cards).to_have_count(2)
    expect(cards.nth(0)).to_have_attribute("data-task-id", ids[2])  # newest first
    expect(cards.nth(1)).to_have_attribute("data-task-id", ids[1])
    more = page.get_by_role("button", name="Show more")
    more.focus()
    page.keyboard.press("Enter")
    expect(cards.nth(2)).to_have_attribute("data-task-id", ids[0])  # the first page's next cursor
    expect(cards.nth(2).get_by_role("link")).to_be_focused()  # the keyboard goes on from the new cards
    count = cards.count()
    assert count in (3, 4)  # two pages of two (an item of an earlier test may wait too)
    for _ in range(20):  # every page is reachable
        if more.is_hidden():
            break
        more.click()  # disabled until the next page has come in (then maybe hidden: no role then)
        expect(page.locator("#inbox-more")).to_be_enabled()
    with service.client(service.approver) as approver:
        total = len(approver.approvals(limit=200).items)
    expect(cards).to_have_count(total)
    expect(more).to_be_hidden()
