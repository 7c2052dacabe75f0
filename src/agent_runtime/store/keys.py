"""API key records: create, look up by hash, list, revoke. Only hashes are stored.

A key is 32 random bytes (256 bits) from ``secrets``; the database keeps its SHA-256. A slow
password hash (bcrypt, argon2) protects *guessable* secrets against offline guessing; a 256-bit
random key cannot be guessed, so a fast hash is as safe and lets every request be verified in
microseconds by an indexed lookup of the hash. Nobody who reads the database (or a backup) can
turn a hash back into a key.

Runs on the store's engine with plain SQLAlchemy Core (its own short transactions); it does not
touch task rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from agent_runtime.store import schema as t
from agent_runtime.store.rows import aware, new_id, utcnow


@dataclass(frozen=True, slots=True)
class KeyRecord:
    id: str
    subject: str
    tenant: str
    roles: list[str]
    description: str | None
    created_by: str | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None

    def active(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


def key_hash(key: str) -> str:
    """The stored form of a key: its SHA-256, hex."""
    return hashlib.sha256(key.encode()).hexdigest()


def _record(row: Mapping[Any, Any]) -> KeyRecord:
    created = aware(row["created_at"])
    assert created is not None
    return KeyRecord(
        id=row["id"],
        subject=row["subject"],
        tenant=row["tenant"],
        roles=list(row["roles"] or []),
        description=row["description"],
        created_by=row["created_by"],
        created_at=created,
        expires_at=aware(row["expires_at"]),
        revoked_at=aware(row["revoked_at"]),
    )


class KeyStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    async def add(
        self,
        hashed: str,
        *,
        subject: str,
        tenant: str,
        roles: list[str],
        description: str | None = None,
        created_by: str | None = None,
        expires_at: datetime | None = None,
    ) -> KeyRecord:
        row = {
            "id": new_id("key"),
            "key_hash": hashed,
            "subject": subject,
            "tenant": tenant,
            "roles": sorted(roles),
            "description": description,
            "created_by": created_by,
            "created_at": utcnow(),
            "expires_at": expires_at,
            "revoked_at": None,
        }
        async with self.engine.begin() as conn:
            await conn.execute(t.api_keys.insert().values(**row))
        return _record(row)

    async def by_hash(self, hashed: str) -> KeyRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(t.api_keys).where(t.api_keys.c.key_hash == hashed))).mappings().first()
        return _record(row) if row is not None else None

    async def get(self, key_id: str) -> KeyRecord | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(sa.select(t.api_keys).where(t.api_keys.c.id == key_id))).mappings().first()
        return _record(row) if row is not None else None

    async def list(self, *, tenant: str | None = None, include_revoked: bool = False) -> list[KeyRecord]:
        stmt = sa.select(t.api_keys).order_by(t.api_keys.c.id)
        if tenant is not None:
            stmt = stmt.where(t.api_keys.c.tenant == tenant)
        if not include_revoked:
            stmt = stmt.where(t.api_keys.c.revoked_at.is_(None))
        async with self.engine.connect() as conn:
            found = (await conn.execute(stmt)).mappings().all()
        return [_record(r) for r in found]

    async def revoke(self, key_id: str, *, tenant: str | None = None) -> KeyRecord | None:
        """Revoke (idempotent: an already revoked key keeps its first revocation time). None: no such
        key (in ``tenant``, when given)."""
        stmt = (
            t.api_keys.update()
            .where(t.api_keys.c.id == key_id, t.api_keys.c.revoked_at.is_(None))
            .values(revoked_at=utcnow())
        )
        if tenant is not None:
            stmt = stmt.where(t.api_keys.c.tenant == tenant)
        async with self.engine.begin() as conn:
            await conn.execute(stmt)
        record = await self.get(key_id)
        if record is None or (tenant is not None and record.tenant != tenant):
            return None
        return record

    async def count_active(self) -> int:
        now = utcnow()
        stmt = (
            sa.select(sa.func.count())
            .select_from(t.api_keys)
            .where(t.api_keys.c.revoked_at.is_(None))
            .where(sa.or_(t.api_keys.c.expires_at.is_(None), t.api_keys.c.expires_at > now))
        )
        async with self.engine.connect() as conn:
            return int((await conn.execute(stmt)).scalar_one())
