"""An OpenID Connect authorization server on 127.0.0.1 for the console's sign-in test.

Discovery, ``/authorize`` (which signs the user in at once and redirects back with a code),
``/token`` (which checks the PKCE verifier against the challenge before it issues an RS256 access
token) and the JWKS the service verifies tokens with. The token endpoint is served on a second port,
another origin than the issuer's, as some identity providers publish it on another host (the
console's page policy must allow both). CORS is open: the console fetches discovery and the token
endpoint from its own origin.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from tests.services.test_oidc import AUDIENCE, Issuer

__all__ = ["AUDIENCE", "AuthorizationServer", "serve_authorization_server"]


@dataclass
class AuthorizationServer:
    issuer: Issuer
    token_origin: str = ""
    """Where ``/token`` is served: another origin than the issuer's."""
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    authorize_requests: list[dict[str, str]] = field(default_factory=list)
    token_requests: list[dict[str, str]] = field(default_factory=list)


@contextmanager
def serve_authorization_server() -> Iterator[AuthorizationServer]:
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
                        "token_endpoint": f"{server_state.token_origin}/token",
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

    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Handler) for _ in range(2)]
    server_state.issuer.url, server_state.token_origin = (f"http://127.0.0.1:{s.server_address[1]}" for s in servers)
    server_state.issuer.add_key("k1")
    for http in servers:
        threading.Thread(target=http.serve_forever, daemon=True).start()
    try:
        yield server_state
    finally:
        for http in servers:
            http.shutdown()
            http.server_close()
