"""The ``agent-runtime`` command: ``serve``, ``migrate``, ``check-config``, ``keys``, and the operator
commands (``tasks …``, ``approvals``). ``--help`` shows :data:`DESCRIPTION`, not this docstring."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import sys
from pathlib import Path

from agent_runtime.errors import ConfigError
from agent_runtime.operator_cli import Parser
from agent_runtime.operator_cli import register as register_operator_commands
from agent_runtime.settings import Settings, load_settings


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, dict[str, object]] = {}
    if getattr(args, "host", None):
        overrides.setdefault("server", {})["host"] = args.host
    if getattr(args, "port", None):
        overrides.setdefault("server", {})["port"] = args.port
    settings = load_settings(args.config)
    if overrides:
        server = settings.server.model_copy(update=overrides["server"])
        settings = settings.model_copy(update={"server": server})
    return settings


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from agent_runtime.app import create_app
    from agent_runtime.logging import configure_logging
    from agent_runtime.runtime import preflight
    from agent_runtime.server import DrainingServer

    settings = _settings(args)
    asyncio.run(preflight(settings))
    configure_logging(settings.server)
    app = create_app(settings)
    tune_gc()
    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.port,
        log_config=None,
        access_log=False,  # ours is structured: server.access_log (api/middleware.py)
        timeout_graceful_shutdown=int(settings.server.shutdown_grace_seconds) + 5,
    )
    DrainingServer(config).run()
    return 0


def tune_gc() -> None:
    """Keep CPython's full garbage collections out of the serving loop's latency.

    A full collection walks every tracked object; with a thousand open SSE streams (~250 objects
    each) plus the imported libraries that is 200-450 ms with the event loop stopped. Collections
    are triggered by objects that happen to be alive when the youngest generation fills up, and a
    fan-out to 1,000 streams has ~1,000 wake-ups in flight at a time, so with the default threshold
    (700) a full collection came every ~10 s of fan-out. Everything built so far (imports, the app)
    lives as long as the process: ``freeze`` takes it out of every future collection, and a larger
    first threshold makes survivors, hence full collections, rare (docs/benchmarks.md, SSE fan-out).
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _migrate(args: argparse.Namespace) -> int:
    from agent_runtime.logging import configure_logging
    from agent_runtime.store import migrate
    from agent_runtime.store.engine import create_engine

    settings = _settings(args)
    configure_logging(settings.server)

    async def run() -> str | None:
        engine = create_engine(settings.database)
        try:
            return await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    revision = asyncio.run(run())
    print(f"database at revision {revision}")
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from agent_runtime.runtime import preflight
    from agent_runtime.tools.registry import load_registry

    settings = _settings(args)
    asyncio.run(preflight(settings))
    registry = load_registry(settings.tools.registry_path)
    for role in ("planner", "executor"):
        resolved = getattr(settings.llm, role).resolved()
        fallback = "".join(f" then {f.provider}/{f.model}" for f in resolved.fallback)
        print(f"llm.{role}: provider={resolved.provider} model={resolved.model}{fallback}")
    print(f"database: {settings.database.url.split('@')[-1]}")
    print(f"tool servers enabled: {', '.join(s.id for s in registry.enabled()) or '(none)'}")
    return 0


DESCRIPTION = """\
Run the service (serve, migrate, check-config), manage its API keys (keys), and operate a running
service from the command line: submit, inspect, approve and follow tasks (tasks ...), and see what
waits for a decision (approvals). 'agent-runtime COMMAND --help' describes each command."""


def build_parser() -> argparse.ArgumentParser:
    # Parser: its subcommands' parsers are Parsers too, so a usage error under --json is printed as JSON.
    formatter = argparse.RawDescriptionHelpFormatter
    parser: argparse.ArgumentParser = Parser(prog="agent-runtime", description=DESCRIPTION, formatter_class=formatter)
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="run the HTTP service and its workers")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.set_defaults(func=_serve)
    mig = sub.add_parser("migrate", help="apply database migrations and exit")
    mig.set_defaults(func=_migrate)
    chk = sub.add_parser("check-config", help="validate config.yaml and tool_registry.yaml and exit")
    chk.set_defaults(func=_check_config)
    for p in (serve, mig, chk):
        p.add_argument("--config", type=Path, help="config file (default: $AGENT_RUNTIME_CONFIG or ./config.yaml)")
    register_operator_commands(sub)
    from agent_runtime.cli_keys import add_parser as add_keys

    add_keys(sub, _settings)
    return parser


def _config_path(args: argparse.Namespace) -> str:
    return str(args.config or os.environ.get("AGENT_RUNTIME_CONFIG", "config.yaml"))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        source = _config_path(args)
        where = "" if exc.message.startswith(source) or ".yaml" in exc.message.split(":")[0] else f"{source}: "
        print(f"agent-runtime: configuration error: {where}{exc.message}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
