"""Who may call the service: API keys and OIDC (``auth``), and how many approvals a plan needs."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from agent_runtime.settings.base import Section

AuthMode = Literal["keys", "oidc", "keys+oidc", "disabled"]


class OidcSettings(Section):
    """Bearer tokens (JWTs) from an OpenID Connect issuer, verified against its JWKS."""

    issuer: str | None = None
    """The ``iss`` every token must carry, e.g. ``https://login.example.com/realms/acme``."""
    audience: str | None = None
    """The ``aud`` every token must carry (the client id or API identifier the issuer puts there)."""
    jwks_url: str | None = None
    """Where the signing keys are; default: ``jwks_uri`` from ``<issuer>/.well-known/openid-configuration``."""
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    subject_claim: str = "sub"
    tenant_claim: str | None = "tenant"
    """Claim holding the tenant; when the token lacks it, ``default_tenant`` (if set) applies, else it is refused."""
    default_tenant: str | None = None
    roles_claim: str = "roles"
    """Claim holding the roles: a list, or a space-separated string; dotted paths reach into objects
    (``realm_access.roles`` for Keycloak). Names other than viewer/submitter/approver/admin are ignored."""
    leeway_seconds: float = Field(default=30.0, ge=0, le=600)
    jwks_cache_seconds: float = Field(default=300.0, gt=0)
    jwks_refresh_cooldown_seconds: float = Field(default=30.0, ge=0)
    """An unknown ``kid`` refreshes the key set at most this often (key rotation without a restart)."""
    http_timeout_seconds: float = Field(default=10.0, gt=0)

    @field_validator("algorithms")
    @classmethod
    def _no_none_or_hmac(cls, value: list[str]) -> list[str]:
        bad = [a for a in value if a.lower() == "none" or a.upper().startswith("HS")]
        if bad or not value:
            raise ValueError(
                f"algorithms must be asymmetric (RS*, PS*, ES*, EdDSA); refused: {', '.join(bad) or '(empty list)'}"
            )
        return value


class AuthSettings(Section):
    mode: AuthMode = "keys"
    """``keys`` (API keys from ``agent-runtime keys create``), ``oidc``, ``keys+oidc``, or
    ``disabled`` (every request is an unidentified admin; refused in production)."""
    oidc: OidcSettings = Field(default_factory=OidcSettings)
    bootstrap_admin_key: bool = True
    """Development only: with no API key in the database, ``serve`` creates one admin key at start
    and prints it once on stdout."""
    key_cache_seconds: float = Field(default=5.0, ge=0)
    """How long a replica trusts a verified API key before reading it again; a revoked key stops
    working on every replica within this time (at once on the replica that revoked it)."""
    metrics_token: SecretStr | None = None
    """When set, ``GET /metrics`` needs ``Authorization: Bearer <metrics_token>``; else it is open."""

    @property
    def keys_enabled(self) -> bool:
        return self.mode in ("keys", "keys+oidc")

    @property
    def oidc_enabled(self) -> bool:
        return self.mode in ("oidc", "keys+oidc")

    @model_validator(mode="after")
    def _oidc_complete(self) -> AuthSettings:
        if self.oidc_enabled and (not self.oidc.issuer or not self.oidc.audience):
            raise ValueError(f"auth.mode is {self.mode!r}: set auth.oidc.issuer and auth.oidc.audience")
        return self


class ApprovalSettings(Section):
    allow_self_approval: bool = False
    """Whether the submitter of a task (or the operator who wrote its current plan version) may approve it."""
    required: int = Field(default=1, ge=1, le=10)
    """Distinct approvers a plan version needs (four-eyes: 2). Partial approvals do not carry over
    to a new version."""
