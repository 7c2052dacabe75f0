"""``tasks artifacts TASK`` lists what a completed task kept; ``tasks download TASK NAME`` saves one."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from agent_runtime.client import Client
from agent_runtime.operator_cli.commands import UsageError
from agent_runtime.operator_cli.output import Output


def artifacts(client: Client, args: argparse.Namespace, out: Output) -> int:
    listing = client.artifacts(args.task)
    if out.as_json:
        out.data(listing)
        return 0
    rows = [[a.name, str(a.size), a.media_type, a.sha256[:12]] for a in listing.items]
    out.table(["NAME", "BYTES", "TYPE", "SHA256"], rows, title=f"{len(rows)} artifact(s) of {args.task}")
    for skipped in listing.skipped:
        out.note(f"not kept: {skipped.name} ({skipped.reason})")
    return 0


def download(client: Client, args: argparse.Namespace, out: Output) -> int:
    """Write the artifact to ``--output`` (default: its own name in the current folder; ``-``:
    stdout, so not with ``--json``). An existing file is kept unless ``--force``."""
    if args.output == "-" and out.as_json:
        raise UsageError("--output - writes the file itself to stdout; leave out --json (or name a file)")
    content = client.download_artifact(args.task, args.name)
    if args.output == "-":
        out.raw(content)
        return 0
    target = Path(args.output or args.name)
    if target.is_dir():
        target = target / args.name
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists; pass --force to overwrite it")
    target.write_bytes(content)
    digest = hashlib.sha256(content).hexdigest()
    if out.as_json:
        out.data({"name": args.name, "path": str(target), "size": len(content), "sha256": digest})
    else:
        out.line(f"saved {target} ({len(content)} bytes, sha256 {digest[:12]})")
    return 0
