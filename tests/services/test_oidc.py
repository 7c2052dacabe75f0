"""OIDC bearer tokens: a key pair made here, its JWKS (and discovery document) served on 127.0.0.1."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from agent_runtime.domain.identity import Role
from agent_runtime.errors import AuthenticationError
from agent_runtime.services.oidc import OidcVerifier
from agent_runtime.settings import OidcSettings
from tests.support.harness import live_service
from tests.support.identity import auth_settings, bearer

AUDIENCE = "agent-runtime"


@dataclass
class Issuer:
    url: str
    keys: dict[str, rsa.RSAPrivateKey] = field(default_factory=dict)
    fetches: int = 0

    def add_key(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        out = []
        for kid, key in self.keys.items():
            jwk = json.loads(RSAAlgorithm.to_jwk(key.public_key()))
            out.append({**jwk, "kid": kid, "use": "sig", "alg": "RS256"})
        return {"keys": out}

    def token(self, kid: str = "k1", *, key: rsa.RSAPrivateKey | None = None, **claims: Any) -> str:
        now = datetime.now(UTC)
        body = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": "alice",
            "tenant": "acme",
            "roles": ["approver"],
            "iat": now,
            "exp": now + timedelta(minutes=5),
            **claims,
        }
        return jwt.encode(body, key or self.keys[kid], algorithm="RS256", headers={"kid": kid})


@contextmanager
def serve_issuer() -> Iterator[Issuer]:
    issuer = Issuer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/.well-known/openid-configuration":
                payload = {"issuer": issuer.url, "jwks_uri": f"{issuer.url}/jwks"}
            elif self.path == "/jwks":
                issuer.fetches += 1
                payload = issuer.jwks()
            else:
                self.send_error(404)
                return
            data = json.dumps(payload).encode()
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    issuer.url = f"http://127.0.0.1:{server.server_address[1]}"
    issuer.add_key("k1")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield issuer
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def issuer() -> Iterator[Issuer]:
    with serve_issuer() as issuer:
        yield issuer


def _verifier(issuer: Issuer, **extra: Any) -> OidcVerifier:
    return OidcVerifier(OidcSettings(issuer=issuer.url, audience=AUDIENCE, jwks_refresh_cooldown_seconds=0, **extra))


async def test_a_valid_token_gives_its_subject_tenant_and_roles_via_discovery(issuer: Issuer) -> None:
    principal = await _verifier(issuer).verify(issuer.token(roles=["approver", "viewer", "superuser"]))
    assert (principal.subject, principal.tenant, principal.via) == ("alice", "acme", "oidc")
    assert principal.roles == {Role.APPROVER, Role.VIEWER}  # unknown role names are ignored


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        ({"exp": datetime.now(UTC) - timedelta(minutes=5)}, "expired"),
        ({"aud": "another-api"}, "another audience"),
        ({"iss": "https://evil.example"}, "another issuer"),
    ],
    ids=["expired", "wrong-audience", "wrong-issuer"],
)
async def test_expired_wrong_audience_and_wrong_issuer_tokens_are_refused(
    issuer: Issuer, claims: dict[str, Any], message: str
) -> None:
    with pytest.raises(AuthenticationError, match=message):
        await _verifier(issuer).verify(issuer.token(**claims))


async def test_a_token_signed_by_another_key_under_a_known_kid_is_refused(issuer: Issuer) -> None:
    forger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(AuthenticationError, match="signature"):
        await _verifier(issuer).verify(issuer.token("k1", key=forger))


async def test_alg_none_and_hmac_tokens_are_refused(issuer: Issuer) -> None:
    now = datetime.now(UTC)
    exp = now + timedelta(hours=1)
    claims: dict[str, Any] = {"iss": issuer.url, "aud": AUDIENCE, "sub": "alice", "tenant": "acme", "exp": exp}
    unsigned = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': 'k1'})}.{_b64({**claims, 'exp': int(exp.timestamp())})}."
    with pytest.raises(AuthenticationError, match="algorithm 'none'"):
        await _verifier(issuer).verify(unsigned)
    # HS256 "signed" with the public key as the secret: the classic algorithm-confusion attack
    # (made by hand: PyJWT itself refuses to sign like that).
    public_pem = (
        issuer.keys["k1"]
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    head = _b64({"alg": "HS256", "typ": "JWT", "kid": "k1"})
    body = _b64({**claims, "exp": int(exp.timestamp())})
    mac = hmac.new(public_pem, f"{head}.{body}".encode(), hashlib.sha256).digest()
    confused = f"{head}.{body}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
    with pytest.raises(AuthenticationError, match="algorithm 'HS256'"):
        await _verifier(issuer).verify(confused)


def _b64(part: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(part).encode()).rstrip(b"=").decode()


async def test_the_key_set_is_cached_and_fetched_again_for_an_unknown_kid(issuer: Issuer) -> None:
    verifier = _verifier(issuer)
    await verifier.verify(issuer.token())
    await verifier.verify(issuer.token())
    assert issuer.fetches == 1
    issuer.add_key("k2")  # the issuer rotates its keys
    principal = await verifier.verify(issuer.token("k2"))
    assert principal.subject == "alice" and issuer.fetches == 2
    with pytest.raises(AuthenticationError, match="kid"):
        await verifier.verify(issuer.token("k3", key=issuer.keys["k1"]))


async def test_claim_names_are_configurable_including_nested_roles(issuer: Issuer) -> None:
    verifier = _verifier(
        issuer, subject_claim="email", tenant_claim="org", roles_claim="realm_access.roles", default_tenant=None
    )
    token = issuer.token(email="bob@acme.example", org="acme", realm_access={"roles": ["admin"]})
    principal = await verifier.verify(token)
    assert (principal.subject, principal.tenant, principal.roles) == (
        "bob@acme.example",
        "acme",
        frozenset({Role.ADMIN}),
    )
    with pytest.raises(AuthenticationError, match="'org'"):
        await verifier.verify(issuer.token(email="x@y", realm_access={"roles": ["admin"]}))


async def test_the_service_accepts_oidc_tokens_and_api_keys_side_by_side(issuer: Issuer, tmp_path: Path) -> None:
    settings = auth_settings(tmp_path, auth={"mode": "keys+oidc", "oidc": {"issuer": issuer.url, "audience": AUDIENCE}})
    async with live_service(settings) as live:
        ok = await live.client.get("/v1/approvals", headers=bearer(issuer.token()))
        assert ok.status_code == 200
        expired = issuer.token(exp=datetime.now(UTC) - timedelta(minutes=5))
        refused = await live.client.get("/v1/approvals", headers=bearer(expired))
        assert refused.status_code == 401 and refused.json()["error"]["message"] == "the token has expired"
        viewer = await live.client.post(
            "/v1/tasks", json={"prompt": "hi"}, headers=bearer(issuer.token(roles=["viewer"]))
        )
        assert viewer.status_code == 403
