"""The CLI's connection options against a service that requires API keys: ``--key``,
``$AGENT_RUNTIME_API_KEY``, ``$AGENT_RUNTIME_SERVER``, and what a missing or wrong key prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from agent_runtime.cli import build_parser
from agent_runtime.operator_cli.run import connect
from tests.operator_cli.cli_runner import CLI
from tests.support.harness import live_service
from tests.support.identity import auth_settings, make_key


@pytest.fixture(autouse=True)
def _no_connection_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AGENT_RUNTIME_API_KEY", raising=False)
    monkeypatch.delenv("AGENT_RUNTIME_SERVER", raising=False)


def test_without_options_or_variables_the_cli_talks_to_127_0_0_1_port_8080_without_a_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with connect(build_parser().parse_args(["tasks", "list"])) as client:
        assert client.config.server == "http://127.0.0.1:8080"
        assert "Authorization" not in client.config.headers
    monkeypatch.setenv("AGENT_RUNTIME_SERVER", "http://127.0.0.1:9/")
    monkeypatch.setenv("AGENT_RUNTIME_API_KEY", "from-env")
    with connect(build_parser().parse_args(["approvals"])) as client:
        assert client.config.server == "http://127.0.0.1:9"
        assert client.config.headers["Authorization"] == "Bearer from-env"
    options = ["tasks", "list", "--server", "http://127.0.0.1:7", "--key", "from-option"]
    with connect(build_parser().parse_args(options)) as client:  # the options win over the variables
        assert client.config.server == "http://127.0.0.1:7"
        assert client.config.headers["Authorization"] == "Bearer from-option"


async def test_the_key_from_the_option_or_the_variable_and_the_server_from_the_variable_reach_a_keyed_service(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_service(auth_settings(tmp_path)) as live:
        submitter = await make_key(live, "sam", "acme", "submitter")
        approver = await make_key(live, "ann", "acme", "approver")
        cli = CLI(live.url)

        submitted = await cli("tasks", "submit", "Add 2 and 3.", "--wait", "--key", submitter, "--json")
        assert submitted.code == 4, submitted.err
        task = submitted.json()
        assert task["status"] == "awaiting_approval" and task["submitted_by"] == "sam"

        monkeypatch.setenv("AGENT_RUNTIME_API_KEY", approver)
        inbox = await cli("approvals", "--json")
        assert inbox.code == 0, inbox.err
        assert [i["task_id"] for i in inbox.json()["items"]] == [task["id"]]

        monkeypatch.setenv("AGENT_RUNTIME_SERVER", live.url)
        approved = await CLI(None)("tasks", "approve", task["id"], "--json")  # no --server: the variable's
        assert approved.code == 0, approved.err
        assert approved.json()["status"] in ("approved", "executing", "completed")
        done = await CLI(None)("tasks", "watch", task["id"], "--json")
        assert done.code == 0 and done.json_lines()[-1]["type"] == "task_completed"


async def test_a_missing_or_wrong_key_is_a_clear_error_with_exit_code_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with live_service(auth_settings(tmp_path)) as live:
        viewer = await make_key(live, "vic", "acme", "viewer")
        cli = CLI(live.url)

        missing = await cli("tasks", "list")
        assert missing.code == 1 and missing.out == ""
        assert "unauthenticated: " in missing.err
        assert "the service wants an API key: set $AGENT_RUNTIME_API_KEY (or pass --key)" in missing.err
        as_json = await cli("tasks", "list", "--json")
        assert as_json.code == 1 and as_json.json()["error"]["code"] == "unauthenticated"

        wrong = await cli("tasks", "list", "--key", "ar_" + "x" * 43)
        assert wrong.code == 1 and "the service did not accept the key given with --key" in wrong.err
        assert "ar_xxx" not in wrong.err  # the key itself is not echoed
        monkeypatch.setenv("AGENT_RUNTIME_API_KEY", "ar_" + "y" * 43)
        wrong_env = await cli("tasks", "list")
        assert wrong_env.code == 1 and "did not accept the key in $AGENT_RUNTIME_API_KEY" in wrong_env.err

        monkeypatch.setenv("AGENT_RUNTIME_API_KEY", viewer)
        assert (await cli("tasks", "list")).code == 0
        refused = await cli("tasks", "submit", "Add 2 and 3.", "--json")
        assert refused.code == 1
        assert refused.json()["error"]["code"] == "forbidden"
        assert "the key is valid but its roles do not allow this" in refused.err
