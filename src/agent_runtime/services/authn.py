"""Authentication: a bearer credential (API key or OIDC token) to a :class:`Principal`.

The API layer calls :meth:`Authenticator.authenticate` once per request, for every route the
route table does not mark public. Which credentials count follows ``auth.mode``:

* ``keys``: API keys (``ar_…``) from ``agent-runtime keys create``;
* ``oidc``: JWTs from the configured issuer;
* ``keys+oidc``: either;
* ``disabled``: no credential is read; every request is the unidentified admin of tenant
  ``default`` (refused when ``server.environment`` is ``production``).

Errors never repeat the credential.
"""

from __future__ import annotations

import hmac
from typing import TYPE_CHECKING

from agent_runtime.domain.identity import Principal, unauthenticated
from agent_runtime.errors import AuthenticationError
from agent_runtime.services.keys import PREFIX, KeyService
from agent_runtime.settings import AuthSettings

if TYPE_CHECKING:  # PyJWT (and cryptography, ~0.1 s) only when OIDC is configured
    from agent_runtime.services.oidc import OidcVerifier

DISABLED_WARNING = (
    "authentication is DISABLED (auth.mode: disabled): anyone who can reach this port can submit, "
    "approve and cancel tasks as admin"
)


def bearer(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


class Authenticator:
    def __init__(self, settings: AuthSettings, keys: KeyService, oidc: OidcVerifier | None = None) -> None:
        self.settings = settings
        self.keys = keys
        if oidc is None and settings.oidc_enabled:
            from agent_runtime.services.oidc import OidcVerifier

            oidc = OidcVerifier(settings.oidc)
        self.oidc = oidc

    @property
    def disabled(self) -> bool:
        return self.settings.mode == "disabled"

    async def authenticate(self, authorization: str | None) -> Principal:
        if self.disabled:
            return unauthenticated()
        token = bearer(authorization)
        if token is None:
            what = "an API key" if self.settings.mode == "keys" else "an API key or OIDC token"
            raise AuthenticationError(
                f"authentication required: send 'Authorization: Bearer <token>' with {what}"
                if not authorization
                else "the Authorization header must be 'Bearer <token>'"
            )
        if token.startswith(PREFIX) and self.settings.keys_enabled:
            principal = await self.keys.verify(token)
            if principal is None:
                raise AuthenticationError("the API key is unknown, revoked or expired")
            return principal
        if self.oidc is not None and token.count(".") == 2:
            return await self.oidc.verify(token)
        raise AuthenticationError(
            "the bearer token is not an API key" if self.settings.mode == "keys" else "the bearer token is not valid"
        )

    def metrics_allowed(self, authorization: str | None) -> bool:
        """``GET /metrics``: open unless ``auth.metrics_token`` is set; then that token is needed."""
        expected = self.settings.metrics_token
        if expected is None:
            return True
        token = bearer(authorization)
        return token is not None and hmac.compare_digest(token.encode(), expected.get_secret_value().encode())
