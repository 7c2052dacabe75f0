"""The console behind a reverse proxy that publishes the service under a path prefix."""

from __future__ import annotations

from urllib.parse import urlsplit

from playwright.sync_api import Request, expect

from tests.console.conftest import PREFIX, Console, _origin


def test_the_console_works_under_a_path_prefix_and_never_leaves_it(console: Console, prefixed_url: str) -> None:
    page = console.page
    console.origins.add(_origin(prefixed_url))
    paths: list[str] = []

    def on_request(request: Request) -> None:
        if _origin(request.url) == _origin(prefixed_url):
            paths.append(urlsplit(request.url).path)

    page.on("request", on_request)
    page.goto(f"{prefixed_url}/")  # the service's home page links the console
    page.get_by_role("link", name="Operator console").click()
    expect(page).to_have_url(f"{prefixed_url}/console/")
    task_id = console.service.submit("Add 2 and 3.")
    page.get_by_label("API key").fill(console.service.approver)
    page.get_by_role("button", name="Sign in", exact=True).click()
    card = page.locator(f"#inbox li[data-task-id='{task_id}']")
    card.get_by_role("link").click()
    expect(page.locator("#task-status")).to_have_text("awaiting_approval")
    expect(page.locator("#events li[data-type='approval_required']")).to_have_count(1)  # the stream, too
    page.goto(f"{prefixed_url}/console")  # without the slash: redirected, prefix kept
    expect(page).to_have_url(f"{prefixed_url}/console/")
    outside = [p for p in paths if not p.startswith(PREFIX + "/") and p != PREFIX]
    assert paths and outside == [], outside
    assert f"{PREFIX}/v1/tasks/{task_id}/stream" in paths
