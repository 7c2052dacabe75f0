"""The operator commands: ``agent-runtime tasks …`` and ``agent-runtime approvals``.

They talk to a running service through :mod:`agent_runtime.client` (``--server``, default
``$AGENT_RUNTIME_SERVER`` or http://127.0.0.1:8080; key from ``--key`` or ``$AGENT_RUNTIME_API_KEY``)
and never import the server stack, so they start quickly. :func:`register` only builds argparse
parsers; a command's module is imported when it runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import NoReturn

from agent_runtime.operator_cli.codes import EPILOG

DEFAULT_SERVER = "http://127.0.0.1:8080"


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors, when ``--json`` is among the arguments, are also printed as
    the command's one JSON document: ``{"error": {"code": "usage_error", …}}`` on stdout, exit 2.

    ``agent-runtime`` builds its top-level parser with this class, so every subcommand's parser is
    one too (argparse makes subparsers of the parent's class).
    """

    _json = False

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._json = "--json" in (sys.argv[1:] if args is None else args)
        return super().parse_known_args(args, namespace)

    def error(self, message: str) -> NoReturn:
        if self._json:
            usage = self.format_usage().strip()
            body = {"error": {"code": "usage_error", "message": message, "details": {"usage": usage}}}
            sys.stdout.write(json.dumps(body) + "\n")
            sys.stdout.flush()
        super().error(message)


def _common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("connection and output")
    group.add_argument(
        "--server", metavar="URL", help=f"the service (default: $AGENT_RUNTIME_SERVER or {DEFAULT_SERVER})"
    )
    group.add_argument(
        "--key",
        metavar="KEY",
        help="API key, sent as a bearer token (default: $AGENT_RUNTIME_API_KEY; prefer the variable)",
    )
    group.add_argument(
        "--json",
        action="store_true",
        help='print one JSON document (the API\'s own body; a failure: {"error": {"code", "message", "details"}})',
    )
    return common


def _leaf(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    handler: str,
    help: str,
    common: argparse.ArgumentParser,
) -> argparse.ArgumentParser:
    parser = sub.add_parser(
        name,
        help=help,
        description=help,
        parents=[common],
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.set_defaults(func=_run, handler=handler)
    return parser


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``tasks`` (with its subcommands) and ``approvals`` to the ``agent-runtime`` parser."""
    common = _common()
    tasks = sub.add_parser("tasks", help="submit, inspect, decide and follow tasks on a running service")
    verbs = tasks.add_subparsers(dest="verb", required=True, metavar="COMMAND")

    p = _leaf(verbs, "submit", "commands:submit", "submit a task ('-' reads the prompt from stdin)", common)
    p.add_argument("prompt")
    p.add_argument("--metadata", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    p.add_argument("--profile", metavar="NAME", help="the agent profile to run under (default: the service's)")
    p.add_argument("--session", metavar="ID", help="a session id: the planner sees the session's earlier tasks")
    _wait_options(p, "wait for the plan (or the end) and print it")

    p = _leaf(verbs, "list", "commands:list_tasks", "list tasks, newest first", common)
    p.add_argument("--status", help="only tasks in this status (e.g. awaiting_approval)")
    p.add_argument("--limit", type=int, help="1-200 (service default 50)")
    p.add_argument("--cursor", help="the next page, as printed by the previous one")

    p = _leaf(verbs, "session", "commands:session", "the tasks of a session, newest first", common)
    p.add_argument("session")
    p.add_argument("--limit", type=int, help="1-200 (service default 50)")
    p.add_argument("--cursor", help="the next page, as printed by the previous one")

    p = _leaf(verbs, "show", "commands:show", "a task with its current plan and step statuses", common)
    p.add_argument("task")

    p = _leaf(verbs, "diff", "commands:diff", "differences between two plan versions (default: the last two)", common)
    p.add_argument("task")
    p.add_argument(
        "versions", nargs="*", type=int, metavar="VERSION", help="A [B]: compare A with B (default B: current)"
    )

    p = _leaf(verbs, "approve", "commands:approve", "approve a plan version (default: the current one, shown)", common)
    p.add_argument("task")
    p.add_argument("--version", type=int, help="the plan version you approve (binding)")
    p.add_argument(
        "--hash",
        metavar="SHA256",
        help="the plan's content hash as you reviewed it (binding; without --version the current plan's is bound)",
    )

    p = _leaf(verbs, "reject", "commands:reject", "reject the proposed plan", common)
    p.add_argument("task")
    p.add_argument("--reason")

    p = _leaf(verbs, "revise", "commands:revise", "send the plan back to the planner with feedback", common)
    p.add_argument("task")
    p.add_argument("feedback")
    _wait_options(p, "wait for the revised plan and print it")

    _leaf(verbs, "edit", "edit:edit", "edit the current plan as YAML in $VISUAL or $EDITOR", common).add_argument(
        "task"
    )

    p = _leaf(verbs, "cancel", "commands:cancel", "cancel the task, stopping calls in flight", common)
    p.add_argument("task")
    p.add_argument("--reason")

    p = _leaf(verbs, "resolve", "commands:resolve", "decide an in-doubt tool call", common)
    p.add_argument("task")
    p.add_argument("call", nargs="?", help="the tool call id (default: the only one in doubt)")
    p.add_argument("--action", required=True, choices=["retry", "skip", "fail"])
    p.add_argument("--result", help="with skip: the result to record instead of running the call")

    p = _leaf(verbs, "decide", "commands:decide", "decide a tool call stopped at a policy gate", common)
    p.add_argument("task")
    p.add_argument("call", nargs="?", help="the gated call's id (default: the one waiting)")
    p.add_argument("--decision", required=True, choices=["approve", "deny", "edit"])
    p.add_argument("--reason", help="with deny: told to the model as the call's result")
    p.add_argument("--tool", help="with edit: call this tool instead (the step must allow it)")
    p.add_argument("--arguments", metavar="JSON", help="with edit: the arguments to call it with")

    p = _leaf(verbs, "retry", "commands:retry", "run a failed task again from where it failed", common)
    p.add_argument("task")
    _wait_options(p, "follow the task until it settles again")

    p = _leaf(verbs, "budget", "commands:budget", "raise the budget of a task paused by it", common)
    p.add_argument("task")
    p.add_argument("--input-tokens", type=int)
    p.add_argument("--output-tokens", type=int)
    p.add_argument("--cost-usd", type=float)
    p.add_argument("--tool-calls", type=int)
    p.add_argument("--wall-seconds", type=float)

    p = _leaf(verbs, "artifacts", "artifacts:artifacts", "the files a completed task kept (out/)", common)
    p.add_argument("task")

    p = _leaf(verbs, "download", "artifacts:download", "save one of a task's artifacts", common)
    p.add_argument("task")
    p.add_argument("name", help="the artifact's name, as `tasks artifacts` lists it")
    p.add_argument("-o", "--output", metavar="PATH", help="where to write it (default: ./NAME; '-': stdout)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")

    p = _leaf(
        verbs,
        "watch",
        "watch:watch",
        "follow the task's events live (reconnects on its own; --json: one event per line)",
        common,
    )
    p.add_argument("task")
    p.add_argument("--after", type=int, default=0, metavar="SEQ", help="start after this event (default: replay all)")
    p.add_argument(
        "--until-done", action="store_true", help="keep following through approvals and in-doubt calls to the end"
    )

    p = _leaf(sub, "approvals", "commands:approvals", "what waits for your decision, newest first", common)
    p.add_argument("--limit", type=int, default=20, help="at most this many (default 20)")
    p.add_argument("--cursor", help="next page: the cursor the previous page printed")


def _wait_options(parser: argparse.ArgumentParser, help: str) -> None:
    parser.add_argument("--wait", action="store_true", help=help)
    parser.add_argument("--timeout", type=float, metavar="SECONDS", help="with --wait: give up after this long")


def _run(args: argparse.Namespace) -> int:
    from agent_runtime.operator_cli.run import run

    return run(args)
