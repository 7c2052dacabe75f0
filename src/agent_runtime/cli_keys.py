"""``agent-runtime keys create | list | revoke``: API keys, straight on the configured database.

``create`` prints the new key once, alone on the last line of stdout (so ``| tail -n1`` captures
it); only its SHA-256 is stored. ``list`` never shows a key. ``revoke`` takes a key id.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from agent_runtime.errors import ConfigError, InputValidationError
from agent_runtime.settings import Settings


def add_parser(sub: Any, settings_of: Any) -> argparse.ArgumentParser:
    """Register ``keys`` on the top-level subparsers; ``settings_of(args)`` loads the settings."""
    keys: argparse.ArgumentParser = sub.add_parser("keys", help="create, list and revoke API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    create = keys_sub.add_parser("create", help="create a key and print it once (last line of stdout)")
    create.add_argument("--subject", required=True, help="who the key acts as (recorded as the actor)")
    create.add_argument("--tenant", required=True, help="the tenant whose tasks the key reaches")
    create.add_argument(
        "--role", action="append", required=True, choices=["viewer", "submitter", "approver", "admin"],
        help="repeat for several roles",
    )  # fmt: skip
    create.add_argument("--description")
    create.add_argument("--expires-in-days", type=float, help="the key stops working after this many days")
    create.add_argument(
        "--from-file", type=Path,
        help="store this key (read from a file, e.g. a mounted secret) instead of a random one; >= 32 characters",
    )  # fmt: skip
    create.add_argument(
        "--if-absent", action="store_true", help="with --from-file: do nothing if that key already exists"
    )
    lst = keys_sub.add_parser("list", help="list keys (ids, subjects, roles; never the keys)")
    lst.add_argument("--tenant")
    lst.add_argument("--all", action="store_true", help="include revoked keys")
    revoke = keys_sub.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("key_id")
    for p in (create, lst, revoke):
        p.add_argument("--config", type=Path, help="config file (default: $AGENT_RUNTIME_CONFIG or ./config.yaml)")
        p.set_defaults(func=lambda args: _run(args, settings_of(args)))
    return keys


def _run(args: argparse.Namespace, settings: Settings) -> int:
    from agent_runtime.logging import configure_logging

    configure_logging(settings.server)  # logs to stderr: stdout carries the key
    return asyncio.run(_keys(args, settings))


async def _keys(args: argparse.Namespace, settings: Settings) -> int:
    from agent_runtime.services.keys import KeyService
    from agent_runtime.store import migrate
    from agent_runtime.store.engine import create_engine
    from agent_runtime.store.keys import KeyStore, key_hash
    from agent_runtime.store.rows import utcnow

    engine = create_engine(settings.database)
    try:
        if settings.database.should_auto_migrate:
            await migrate.upgrade(engine)
        elif await migrate.pending(engine):
            raise ConfigError("database.url: the database is not migrated; run `agent-runtime migrate` first")
        keys = KeyService(KeyStore(engine), cache_seconds=0)
        if args.keys_command == "create":
            given = args.from_file.read_text(encoding="utf-8").strip() if args.from_file else None
            if given is not None and args.if_absent and await keys.store.by_hash(key_hash(given)) is not None:
                print("key already present; nothing to do")
                return 0
            expires = utcnow() + timedelta(days=args.expires_in_days) if args.expires_in_days else None
            try:
                issued = await keys.create(
                    subject=args.subject, tenant=args.tenant, roles=args.role, description=args.description,
                    created_by="agent-runtime keys create", expires_at=expires, key=given,
                )  # fmt: skip
            except InputValidationError as exc:
                print(f"agent-runtime: {exc.message}", file=sys.stderr)
                return 2
            r = issued.record
            print(f"created key {r.id} for subject {r.subject} in tenant {r.tenant} with roles {', '.join(r.roles)}")
            if r.expires_at is not None:
                print(f"expires at {r.expires_at.isoformat()}")
            if given is None:
                print("the key is shown only now; store it in a secret manager:")
                print(issued.key)
            return 0
        if args.keys_command == "list":
            print("id\tsubject\ttenant\troles\tcreated_at\texpires_at\trevoked_at")
            for r in await keys.list(tenant=args.tenant, include_revoked=args.all):
                when = [r.created_at, r.expires_at, r.revoked_at]
                stamps = "\t".join(t.isoformat(timespec="seconds") if t else "-" for t in when)
                print(f"{r.id}\t{r.subject}\t{r.tenant}\t{','.join(r.roles)}\t{stamps}")
            return 0
        record = await keys.revoke(args.key_id)
        if record is None:
            print(f"agent-runtime: no key {args.key_id}", file=sys.stderr)
            return 1
        print(f"revoked {record.id} ({record.subject}, tenant {record.tenant})")
        return 0
    finally:
        await engine.dispose()
