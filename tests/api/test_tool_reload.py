"""The tool registry reloads without a restart; a bad file is refused and the old registry stays."""

from __future__ import annotations

from pathlib import Path

from tests.support.harness import EXAMPLE_SERVER, live_service, make_settings, write_registry


async def test_reload_picks_up_a_new_server_and_refuses_a_broken_file(tmp_path: Path) -> None:
    registry = write_registry(tmp_path)
    async with live_service(make_settings(tmp_path, registry=registry)) as live:
        before = (await live.client.get("/v1/tools")).json()
        assert {t["name"].split(".")[0] for t in before["tools"]} == {"example"}
        assert before["servers"]["example"]["ok"] is True
        echo = next(t for t in before["tools"] if t["name"] == "example.echo")
        assert echo["safe_to_repeat"] is True and echo["input_schema"]["required"] == ["text"]
        assert (echo["read_only"], echo["destructive"], echo["open_world"]) == (True, False, False)
        assert (echo["overridden"], echo["vouched_by"]) == ([], None)

        second = "  - id: second\n    type: local_stdio\n    config:\n      command: ${PYTHON}\n"
        registry.write_text(registry.read_text() + second + f"      args: ['{EXAMPLE_SERVER}']\n")
        reloaded = await live.client.post("/v1/admin/reload-tools")
        assert reloaded.status_code == 200 and set(reloaded.json()["servers"]) == {"example", "second"}
        names = {t["name"] for t in (await live.client.get("/v1/tools")).json()["tools"]}
        assert {"example.echo", "second.echo"} <= names

        registry.write_text("servers:\n  - id: bad.id\n    type: local_stdio\n    config: {command: x}\n")
        refused = await live.client.post("/v1/admin/reload-tools")
        assert refused.status_code == 422
        assert refused.json()["error"]["code"] == "config_error"
        assert "bad.id" in refused.json()["error"]["message"]
        still = {t["name"] for t in (await live.client.get("/v1/tools")).json()["tools"]}
        assert still == names
