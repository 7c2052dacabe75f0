"""OIDC / JWT bearer tokens, verified with PyJWT against the issuer's JWKS.

The signing keys come from ``auth.oidc.jwks_url`` or, when unset, from the ``jwks_uri`` of the
issuer's discovery document. PyJWT's ``PyJWKClient`` caches the key set
(``jwks_cache_seconds``) and fetches it again when a token names a ``kid`` it does not know, at
most once per ``jwks_refresh_cooldown_seconds`` (so a rotated key works without a restart, and a
flood of made-up ``kid`` values cannot turn into a flood of fetches). Its fetches are blocking
(urllib), so they run on a worker thread.

Verified: signature (only the configured asymmetric algorithms: ``alg: none`` and HMAC are never
accepted, whatever the token says), ``exp`` (required), ``nbf``, ``iat``, ``iss`` and ``aud``.
Subject, tenant and roles come from the configured claims.
"""

from __future__ import annotations

import json
import urllib.request
from typing import Any

import anyio
import jwt
import structlog

from agent_runtime.domain.identity import Principal, Role
from agent_runtime.errors import AuthenticationError
from agent_runtime.settings import OidcSettings

log = structlog.get_logger(__name__)


class OidcVerifier:
    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self._client: jwt.PyJWKClient | None = None
        self._lock = anyio.Lock()

    async def _jwks(self) -> jwt.PyJWKClient:
        if self._client is not None:
            return self._client
        async with self._lock:
            if self._client is None:
                url = self.settings.jwks_url
                if url is None:
                    url = await anyio.to_thread.run_sync(self._discover)
                self._client = jwt.PyJWKClient(
                    url,
                    cache_jwk_set=True,
                    lifespan=self.settings.jwks_cache_seconds,
                    timeout=self.settings.http_timeout_seconds,
                    cooldown_duration=self.settings.jwks_refresh_cooldown_seconds,
                )
        return self._client

    def _discover(self) -> str:
        try:
            document = discovery(self.settings.issuer or "", self.settings.http_timeout_seconds)
        except ValueError as exc:
            raise AuthenticationError(f"cannot verify the token: {exc}") from None
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str):
            raise AuthenticationError("cannot verify the token: the issuer's discovery document has no jwks_uri")
        return jwks_uri

    async def verify(self, token: str) -> Principal:
        """The principal the token names; :class:`AuthenticationError` if it does not verify."""
        s = self.settings
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthenticationError("the bearer token is not a valid API key or JWT") from None
        if header.get("alg") not in s.algorithms:
            raise AuthenticationError(f"token algorithm {header.get('alg')!r} is not accepted")
        client = await self._jwks()
        try:
            key = await anyio.to_thread.run_sync(client.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError:
            log.warning("oidc_jwks_unavailable", url=client.uri)
            raise AuthenticationError("cannot verify the token: the issuer's keys are unavailable") from None
        except jwt.PyJWKClientError:
            raise AuthenticationError("the token's signing key (kid) is not one of the issuer's keys") from None
        except jwt.PyJWTError:
            raise AuthenticationError("the bearer token is not a valid JWT") from None
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=s.algorithms,
                audience=s.audience,
                issuer=s.issuer,
                leeway=s.leeway_seconds,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise AuthenticationError("the token has expired") from None
        except jwt.InvalidAudienceError:
            raise AuthenticationError("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise AuthenticationError("the token is from another issuer") from None
        except jwt.InvalidSignatureError:
            raise AuthenticationError("the token's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise AuthenticationError(f"the token is not acceptable: {type(exc).__name__}") from None
        return self._principal(claims)

    def _principal(self, claims: dict[str, Any]) -> Principal:
        s = self.settings
        subject = _claim(claims, s.subject_claim)
        if not isinstance(subject, str) or not subject:
            raise AuthenticationError(f"the token has no {s.subject_claim!r} claim")
        tenant = _claim(claims, s.tenant_claim) if s.tenant_claim else None
        if tenant is None:
            tenant = s.default_tenant
        if not isinstance(tenant, str) or not tenant:
            raise AuthenticationError(f"the token has no {s.tenant_claim!r} claim (and no default_tenant is set)")
        raw = _claim(claims, s.roles_claim)
        names = raw.split() if isinstance(raw, str) else raw if isinstance(raw, list) else []
        roles = frozenset(Role(n) for n in names if isinstance(n, str) and n in Role.__members__.values())
        return Principal(subject=subject, tenant=tenant, roles=roles, via="oidc")


def _claim(claims: dict[str, Any], path: str | None) -> Any:
    """A claim by name, or by dotted path into nested objects (``realm_access.roles``)."""
    if not path:
        return None
    if path in claims:
        return claims[path]
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def discovery(issuer: str, timeout: float) -> dict[str, Any]:
    """The issuer's OpenID Connect discovery document (blocking: call it on a worker thread).
    :class:`ValueError` (saying why, naming no secret) when it cannot be read."""
    url = f"{issuer.rstrip('/')}/.well-known/openid-configuration"
    if not url.startswith(("https://", "http://")):
        raise ValueError("the OIDC issuer is not an http(s) URL")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            document = json.loads(response.read())
    except (OSError, ValueError) as exc:
        log.warning("oidc_discovery_failed", url=url, error=type(exc).__name__)
        raise ValueError("the issuer's keys are unavailable") from None
    if not isinstance(document, dict):
        raise ValueError("the issuer's discovery document is not a JSON object")
    return document
