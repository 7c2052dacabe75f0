"""The console's routes without a browser: where they are, their policy, what they ship."""

from __future__ import annotations

import re
from pathlib import Path

from agent_runtime.console import STATIC
from tests.console.issuer import serve_authorization_server
from tests.support.harness import live_service, make_settings


async def test_home_links_the_console_and_the_console_is_served_under_a_strict_policy(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        home = await live.client.get("/")
        assert home.status_code == 200 and 'href="console/"' in home.text

        moved = await live.client.get("/console")
        assert moved.status_code == 307 and moved.headers["location"] == "console/"  # relative: a prefix stays

        page = await live.client.get("/console/")
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
        assert policy["default-src"] == "'none'"
        assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"  # nothing inline
        assert policy["connect-src"] == "'self'" and policy["frame-ancestors"] == "'none'"

        script = await live.client.get("/console/assets/app.js")
        assert script.status_code == 200 and "javascript" in script.headers["content-type"]
        config = await live.client.get("/console/config.json")
        assert config.json() == {"auth_mode": "disabled", "keys": False, "oidc": None}


async def test_with_oidc_the_sign_in_config_names_the_issuer_and_the_policy_lets_the_page_reach_it(
    tmp_path: Path,
) -> None:
    with serve_authorization_server() as issuer:  # its token endpoint is on another origin (port)
        oidc = {"issuer": issuer.issuer.url, "audience": "agent-console"}
        settings = make_settings(tmp_path, auth={"mode": "keys+oidc", "oidc": oidc, "bootstrap_admin_key": False})
        async with live_service(settings) as live:
            config = (await live.client.get("/console/config.json")).json()
            assert config["oidc"] == {"issuer": oidc["issuer"], "client_id": "agent-console", "scope": "openid"}
            assert config["keys"] is True
            page = await live.client.get("/console/")
            connect = f"connect-src 'self' {issuer.issuer.url} {issuer.token_origin};"
            assert connect in page.headers["content-security-policy"]


async def test_when_the_issuers_discovery_fails_the_policy_still_names_the_issuer(tmp_path: Path) -> None:
    with serve_authorization_server() as issuer:
        oidc = {"issuer": f"{issuer.issuer.url}/no-such-realm", "audience": "agent-console"}
        settings = make_settings(tmp_path, auth={"mode": "keys+oidc", "oidc": oidc, "bootstrap_admin_key": False})
        async with live_service(settings) as live:
            page = await live.client.get("/console/")
            assert page.status_code == 200
            assert f"connect-src 'self' {issuer.issuer.url};" in page.headers["content-security-policy"]


def test_the_assets_name_no_other_host_and_no_absolute_path() -> None:
    files = sorted(STATIC.iterdir())
    assert {f.name for f in files} >= {"index.html", "app.js", "api.js", "console.css"}
    for path in files:
        text = path.read_text()
        assert not re.search(r"https?://|//cdn|@import", text.replace("http://www.w3.org/2000/svg", "")), path.name
        # index.html: every src/href relative to the page (so /prefix/console/ keeps its prefix)
        assert not re.search(r"""(?:src|href)=["']/""", text), path.name
        assert "<script>" not in text and " on" + "click=" not in text, path.name  # nothing inline
