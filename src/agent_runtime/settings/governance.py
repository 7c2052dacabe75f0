"""Policies, budgets, prices, webhooks, agent profiles and sessions: what the service decides,
limits and tells others, and what its agents are told."""

from __future__ import annotations

import base64
import binascii
from pathlib import Path
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from agent_runtime.domain.notifications import NOTIFIABLE_EVENTS
from agent_runtime.settings.base import Section


class PolicySettings(Section):
    path: Path | None = None
    """The policy file (YAML, ``policy/`` package); ``None``: the built-in default policy (every plan
    waits for ``approvals.required`` approvers, every call the plan allows is made)."""
    expiry_check_seconds: float = Field(default=1.0, gt=0, le=60)
    """How often each replica looks for approvals and call gates past their ``expire_after``."""
    estimate_history_tasks: int = Field(default=50, ge=0, le=10_000)
    """Plan estimates average the completed steps of this many recently completed tasks (0: the
    heuristic only)."""
    estimate_history_seconds: float = Field(default=30.0, ge=0)
    """How long that history is reused before it is read again."""


class ProfileSettings(Section):
    path: Path | None = None
    """The agent profiles file (YAML, ``profiles/`` package); ``None``: one built-in profile,
    ``default``, with today's prompts, models, tool servers and limits."""


class SessionSettings(Section):
    summary_max_tokens: int = Field(default=1000, ge=0, le=100_000)
    """The bound on the summary of a session's earlier tasks that the planner and executor see
    (estimated at four characters a token; 0: no summary)."""
    summary_max_tasks: int = Field(default=20, ge=0, le=200)
    """At most this many earlier tasks (the newest) are read for the summary."""


class Budget(Section):
    """Limits on what one task may spend; ``None`` (the default for each) means no limit."""

    input_tokens: int | None = Field(default=None, ge=0)
    output_tokens: int | None = Field(default=None, ge=0)
    cost_usd: float | None = Field(default=None, ge=0, allow_inf_nan=False)
    tool_calls: int | None = Field(default=None, ge=0)
    wall_seconds: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    def merged(self, override: Budget | None) -> Budget:
        """This budget with every limit ``override`` sets replacing its own (a policy rule's budget)."""
        if override is None:
            return self
        return self.model_copy(update=override.model_dump(exclude_none=True))


class ModelPrice(Section):
    """What a model costs, in USD per million tokens."""

    input_usd_per_mtok: float = Field(ge=0, allow_inf_nan=False)
    output_usd_per_mtok: float = Field(ge=0, allow_inf_nan=False)


class PricingSettings(Section):
    models: dict[str, ModelPrice] = Field(default_factory=dict)
    """Added to (and replacing entries of) the shipped table ``policy.pricing.DEFAULT_PRICES``. A key
    also prices its dated names: ``gpt-4o`` covers ``gpt-4o-2024-08-06``."""


class WebhookEndpoint(Section):
    """One receiver of signed event notifications (Standard Webhooks)."""

    id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    """Names the endpoint in delivery records and the API; keep it stable (pending deliveries follow it)."""
    url: str
    events: list[str] = Field(min_length=1)
    """Event types sent here; one or more of ``domain.notifications.NOTIFIABLE_EVENTS``."""
    secret: SecretStr
    """``whsec_`` + base64 of 24-64 random bytes (Standard Webhooks); the receiver verifies with it."""
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    max_attempts: int = Field(default=8, ge=1, le=100)
    """After this many failed attempts the delivery is ``failed`` (visible in the API; retry by hand)."""
    backoff_base_seconds: float = Field(default=5.0, ge=0)
    """Wait before attempt n+1: ``base * 2**(n-1)``, plus up to 10 % jitter, at most ``backoff_cap_seconds``."""
    backoff_cap_seconds: float = Field(default=3600.0, ge=0)

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http:// or https:// URL with a host")
        return value

    @field_validator("events")
    @classmethod
    def _known_events(cls, value: list[str]) -> list[str]:
        unknown = [e for e in value if e not in NOTIFIABLE_EVENTS]
        if unknown:
            raise ValueError(
                f"unknown event type(s) {', '.join(map(repr, unknown))}; webhooks can send "
                f"{', '.join(NOTIFIABLE_EVENTS)}"
            )
        return list(dict.fromkeys(value))

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if not raw.startswith("whsec_"):
            raise ValueError("must start with 'whsec_' followed by base64 (Standard Webhooks form)")
        encoded = raw[len("whsec_") :]
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("is not valid base64 after 'whsec_'") from None
        if not 24 <= len(key) <= 64:
            raise ValueError(f"must decode to 24-64 bytes, not {len(key)}")
        return value


class WebhookSettings(Section):
    endpoints: list[WebhookEndpoint] = Field(default_factory=list)
    poll_seconds: float = Field(default=5.0, gt=0)
    """Deliveries start as soon as this replica commits an event; this poll catches the rest (events
    committed by a replica that stopped, retries coming due)."""
    claim_seconds: float = Field(default=120.0, gt=0)
    """A replica sending a delivery holds it this long; after that another replica may send it again."""
    concurrency: int = Field(default=16, ge=1, le=1000)
    """Deliveries in flight at once per replica."""

    @model_validator(mode="after")
    def _consistent(self) -> WebhookSettings:
        problems = []
        ids = [e.id for e in self.endpoints]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            problems.append(f"endpoint ids must be unique; repeated: {', '.join(duplicates)}")
        slow = sorted({e.id for e in self.endpoints if e.timeout_seconds >= self.claim_seconds})
        if slow:
            problems.append(
                f"claim_seconds ({self.claim_seconds}) must exceed every endpoint's timeout_seconds "
                f"(not so for {', '.join(slow)}), or a slow delivery is sent twice"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self
