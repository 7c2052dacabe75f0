"""OIDC sign-in in the browser: the authorization-code flow with PKCE against an issuer on 127.0.0.1.

The issuer here is a small authorization server: discovery, ``/authorize`` (which signs the user in
at once and redirects back with a code), ``/token`` (which checks the PKCE verifier against the
challenge before it issues an RS256 access token) and the JWKS the service verifies tokens with.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from playwright.sync_api import expect

from tests.console.conftest import Console, Service, _origin
from tests.services.test_oidc import AUDIENCE, Issuer
from tests.support.harness import live_service
from tests.support.identity import auth_settings


@dataclass
class AuthorizationServer:
    issuer: Issuer
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)


@pytest.fixture(scope="module")
def authorization_server() -> Iterator[AuthorizationServer]:
    server_state = AuthorizationServer(Issuer(url=""))

    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, payload: Any = None, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(payload).encode() if payload is not None else b""
            self.send_response(status)
            self.send_header("access-control-allow-origin", "*")  # the console fetches discovery and token
            if payload is not None:
                self.send_header("content-type", "application/json")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlsplit(self.path)
            base = server_state.issuer.url
            if url.path == "/.well-known/openid-configuration":
                self._send(
                    200,
                    {
                        "issuer": base,
                        "authorization_endpoint": f"{base}/authorize",
                        "token_endpoint": f"{base}/token",
                        "jwks_uri": f"{base}/jwks",
                    },
                )
            elif url.path == "/jwks":
                self._send(200, server_state.issuer.jwks())
            elif url.path == "/authorize":
                query = {k: v[0] for k, v in parse_qs(url.query).items()}
                server_state.authorize_requests.append(query)
                code = secrets.token_urlsafe(16)
                server_state.codes[code] = query
                target = f"{query['redirect_uri']}?{urlencode({'code': code, 'state': query['state']})}"
                self._send(302, headers={"location": target})
            else:
                self._send(404, {"error": "not_found"})

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["content-length"])).decode()
            form = {k: v[0] for k, v in parse_qs(body).items()}
            server_state.token_requests.append(form)
            asked = server_state.codes.pop(form.get("code", ""), None)
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if (
                asked is None
                or asked["code_challenge"] != challenge
                or asked["redirect_uri"] != form.get("redirect_uri")
                or asked["client_id"] != form.get("client_id")
            ):
                self._send(400, {"error": "invalid_grant", "error_description": "code, verifier or redirect mismatch"})
                return
            token = server_state.issuer.token(sub="olivia", tenant="default", roles=["approver"])
            self._send(200, {"access_token": token, "token_type": "Bearer", "expires_in": 300})

        def log_message(self, format: str, *args: Any) -> None:
            pass

    http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server_state.issuer.url = f"http://127.0.0.1:{http.server_address[1]}"
    server_state.issuer.add_key("k1")
    thread = threading.Thread(target=http.serve_forever, daemon=True)
    thread.start()
    try:
        yield server_state
    finally:
        http.shutdown()
        http.server_close()


@pytest.fixture(scope="module")
def oidc_url(
    service: Service, authorization_server: AuthorizationServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """A second service, with ``auth.mode: keys+oidc`` trusting the issuer above."""
    tmp: Path = tmp_path_factory.mktemp("console-oidc")
    oidc = {"issuer": authorization_server.issuer.url, "audience": AUDIENCE, "jwks_refresh_cooldown_seconds": 0}
    settings = auth_settings(tmp, auth={"mode": "keys+oidc", "oidc": oidc})
    with service.portal.wrap_async_context_manager(live_service(settings)) as live:
        yield live.url


def test_sign_in_with_openid_connect_uses_pkce_and_the_issuers_token(
    console: Console, oidc_url: str, authorization_server: AuthorizationServer
) -> None:
    page = console.page
    console.origins.update({_origin(oidc_url), _origin(authorization_server.issuer.url)})
    page.goto(f"{oidc_url}/console/")
    page.get_by_role("button", name="Sign in with OpenID Connect").click()
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    expect(page.locator("#inbox")).to_contain_text("Nothing waits for you.")  # an approver's inbox: 200

    asked = authorization_server.authorize_requests[-1]
    assert asked["response_type"] == "code" and asked["client_id"] == AUDIENCE
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert asked["redirect_uri"] == f"{oidc_url}/console/"
    exchanged = authorization_server.token_requests[-1]
    assert exchanged["grant_type"] == "authorization_code" and len(exchanged["code_verifier"]) >= 43
    assert page.url.startswith(f"{oidc_url}/console/") and "code=" not in page.url  # gone from the address bar
    token = page.evaluate("sessionStorage.getItem('agent-runtime.token')")
    assert token.count(".") == 2  # the issuer's JWT, not an API key
