"""OIDC sign-in in the browser: the authorization-code flow with PKCE against an issuer on 127.0.0.1
(``tests/console/issuer.py``), which the shared service trusts (``auth.mode: keys+oidc``)."""

from __future__ import annotations

from playwright.sync_api import expect

from tests.console.conftest import Console, _origin
from tests.console.issuer import AUDIENCE


def test_sign_in_with_openid_connect_uses_pkce_and_the_issuers_token(console: Console) -> None:
    page, service = console.page, console.service
    authorization_server = service.issuer
    console.origins |= {_origin(authorization_server.issuer.url), authorization_server.token_origin}
    console.open()
    page.get_by_role("button", name="Sign in with OpenID Connect").click()
    expect(page.get_by_role("heading", name="Inbox")).to_be_visible()
    expect(page.locator("#inbox-updated")).to_contain_text("Updated")  # the inbox answered the token: 200

    asked = authorization_server.authorize_requests[-1]
    assert asked["response_type"] == "code" and asked["client_id"] == AUDIENCE
    assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
    assert asked["redirect_uri"] == f"{service.url}/console/"
    policy = page.evaluate("fetch(location.href).then(r => r.headers.get('content-security-policy'))")
    connect = next(p.strip() for p in policy.split(";") if p.strip().startswith("connect-src"))
    assert connect == f"connect-src 'self' {authorization_server.issuer.url} {authorization_server.token_origin}"
    exchanged = authorization_server.token_requests[-1]
    assert exchanged["grant_type"] == "authorization_code" and len(exchanged["code_verifier"]) >= 43
    assert page.url.startswith(f"{service.url}/console/") and "code=" not in page.url  # gone from the address bar
    token = page.evaluate("sessionStorage.getItem('agent-runtime.token')")
    assert token.count(".") == 2  # the issuer's JWT, not an API key
