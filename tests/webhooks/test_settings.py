"""Webhook configuration is checked at start: every problem names its key, and no secret is echoed."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from agent_runtime.errors import ConfigError
from agent_runtime.settings import load_settings

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def _load(tmp_path: Path, endpoint: str, extra: str = "") -> str:
    config = tmp_path / "config.yaml"
    config.write_text(f"webhooks:\n{extra}  endpoints:\n    - {endpoint}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    return caught.value.message


def test_an_unknown_event_type_is_refused_naming_the_key(tmp_path: Path) -> None:
    message = _load(tmp_path, f"{{id: ops, url: 'https://h.example/x', events: [task_finished], secret: '{SECRET}'}}")
    assert "webhooks.endpoints.0.events" in message
    assert "'task_finished'" in message and "approval_required" in message
    assert SECRET not in message


@pytest.mark.parametrize(
    ("secret", "problem"),
    [
        ("plainsecret", "must start with 'whsec_'"),
        ("whsec_!!!!", "not valid base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "24-64 bytes"),
    ],
)
def test_a_secret_not_in_standard_webhooks_form_is_refused_without_echoing_it(
    tmp_path: Path, secret: str, problem: str
) -> None:
    message = _load(tmp_path, f"{{id: ops, url: 'https://h.example/x', events: [task_failed], secret: '{secret}'}}")
    assert "webhooks.endpoints.0.secret" in message and problem in message
    assert secret not in message


def test_a_url_must_be_http_or_https(tmp_path: Path) -> None:
    message = _load(tmp_path, f"{{id: ops, url: 'ftp://h.example/x', events: [task_failed], secret: '{SECRET}'}}")
    assert "webhooks.endpoints.0.url" in message


def test_endpoint_ids_are_unique_and_claims_outlast_timeouts(tmp_path: Path) -> None:
    one = f"{{id: ops, url: 'https://h.example/x', events: [task_failed], secret: '{SECRET}', timeout_seconds: 30}}"
    config = tmp_path / "config.yaml"
    config.write_text(f"webhooks:\n  claim_seconds: 20\n  endpoints:\n    - {one}\n    - {one}\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert "repeated: ops" in caught.value.message
    assert "claim_seconds (20.0) must exceed every endpoint's timeout_seconds" in caught.value.message


def test_a_valid_endpoint_loads_with_its_defaults(tmp_path: Path) -> None:
    config = tmp_path / "config.yaml"
    config.write_text(
        f"webhooks:\n  endpoints:\n    - {{id: ops, url: 'https://h.example/x', events: [task_failed, task_failed],"
        f" secret: '{SECRET}'}}\n"
    )
    [endpoint] = load_settings(config).webhooks.endpoints
    assert endpoint.events == ["task_failed"]
    assert (endpoint.max_attempts, endpoint.backoff_base_seconds, endpoint.timeout_seconds) == (8, 5.0, 10.0)
    assert SECRET not in repr(endpoint)


def test_endpoints_can_come_from_the_environment_as_json(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    endpoints = f'[{{"id": "ops", "url": "https://h.example/x", "events": ["task_failed"], "secret": "{SECRET}"}}]'
    monkeypatch.setenv("AGENT_RUNTIME_WEBHOOKS__ENDPOINTS", endpoints)
    config = tmp_path / "config.yaml"
    config.write_text("{}\n")
    [endpoint] = load_settings(config).webhooks.endpoints
    assert (endpoint.id, endpoint.secret.get_secret_value()) == ("ops", SECRET)
