"""API keys: issue (shown once), verify (cached briefly), list, revoke, and the development bootstrap.

A key looks like ``ar_<43 url-safe characters>`` (32 random bytes). Only its SHA-256 is stored
(see ``store/keys.py`` for why a fast hash is right for random keys). Verification hashes the
presented key and looks the hash up; a replica keeps a verified key for ``auth.key_cache_seconds``
so a busy client does not cost a database read per request. Revoking through this service drops
the key from this replica's cache at once; other replicas stop accepting it within that time.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from datetime import datetime

import structlog

from agent_runtime.domain.identity import DEFAULT_TENANT, Principal, Role, parse_roles
from agent_runtime.errors import InputValidationError
from agent_runtime.store.keys import KeyRecord, KeyStore, key_hash
from agent_runtime.store.rows import utcnow

log = structlog.get_logger(__name__)

PREFIX = "ar_"
MIN_IMPORTED_LENGTH = 32


def new_key() -> str:
    return PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    record: KeyRecord
    key: str
    """The key itself: returned once, never stored."""


class KeyService:
    def __init__(self, store: KeyStore, cache_seconds: float = 5.0) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, KeyRecord]] = {}

    async def create(
        self,
        *,
        subject: str,
        tenant: str,
        roles: list[str],
        description: str | None = None,
        created_by: str | None = None,
        expires_at: datetime | None = None,
        key: str | None = None,
    ) -> IssuedKey:
        """A new key for ``subject`` in ``tenant`` with ``roles``. ``key``: use this key instead of a
        random one (imported from a secret store; at least 32 characters)."""
        subject, tenant = subject.strip(), tenant.strip()
        if not subject or len(subject) > 200:
            raise InputValidationError("subject must be 1-200 characters", details={"field": "subject"})
        if not tenant or len(tenant) > 200:
            raise InputValidationError("tenant must be 1-200 characters", details={"field": "tenant"})
        if not roles:
            raise InputValidationError("a key needs at least one role", details={"field": "roles"})
        try:
            parsed = parse_roles(roles)
        except ValueError as exc:
            raise InputValidationError(str(exc), details={"field": "roles"}) from None
        if expires_at is not None and expires_at <= utcnow():
            raise InputValidationError("expires_at is in the past", details={"field": "expires_at"})
        if key is not None:
            key = key.strip()
            if len(key) < MIN_IMPORTED_LENGTH:
                raise InputValidationError(
                    f"an imported key needs at least {MIN_IMPORTED_LENGTH} characters (use e.g. "
                    "`openssl rand -base64 32`)",
                    details={"field": "key"},
                )
        raw = key or new_key()
        record = await self.store.add(
            key_hash(raw),
            subject=subject,
            tenant=tenant,
            roles=[r.value for r in parsed],
            description=description,
            created_by=created_by,
            expires_at=expires_at,
        )
        log.info("api_key_created", key_id=record.id, subject=subject, tenant=tenant, roles=record.roles)
        return IssuedKey(record, raw)

    async def verify(self, presented: str) -> Principal | None:
        """The principal of an active key, or None (unknown, revoked or expired)."""
        hashed = key_hash(presented)
        now_mono = time.monotonic()
        cached = self._cache.get(hashed)
        if cached is not None and now_mono - cached[0] < self.cache_seconds:
            record: KeyRecord | None = cached[1]
        else:
            record = await self.store.by_hash(hashed)
            if record is not None and self.cache_seconds > 0:
                if len(self._cache) > 10_000:
                    self._cache.clear()
                self._cache[hashed] = (now_mono, record)
        if record is None or not record.active(utcnow()):
            return None
        return Principal(
            subject=record.subject,
            tenant=record.tenant,
            roles=parse_roles(record.roles),
            via="key",
            credential_id=record.id,
        )

    async def revoke(self, key_id: str, *, tenant: str | None = None) -> KeyRecord | None:
        record = await self.store.revoke(key_id, tenant=tenant)
        if record is not None:
            self._cache = {h: v for h, v in self._cache.items() if v[1].id != key_id}
            log.info("api_key_revoked", key_id=key_id)
        return record

    async def list(self, *, tenant: str | None = None, include_revoked: bool = False) -> list[KeyRecord]:
        return await self.store.list(tenant=tenant, include_revoked=include_revoked)

    async def bootstrap_admin(self) -> IssuedKey | None:
        """Development start with no active key: create one admin key (tenant ``default``)."""
        if await self.store.count_active() > 0:
            return None
        return await self.create(
            subject="admin",
            tenant=DEFAULT_TENANT,
            roles=[Role.ADMIN.value],
            description="created at first start (development)",
            created_by="agent-runtime serve",
        )
