"""The published OpenAPI document is exact: schemathesis, with all its checks, finds no failure.

It runs the real ``st`` CLI (schemathesis 4) against the live service: examples, coverage,
fuzzing and stateful phases, a fixed seed and a bounded number of examples per operation, so the
run is repeatable and takes a minute or two. Authentication is on (an admin key of tenant
``default``), as in production, so the checks also hold the document's security scheme to the
service (401 without or with a bad token)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import anyio
import pytest

from tests.support.harness import live_service
from tests.support.identity import auth_settings, make_key

ST = Path(sys.executable).with_name("st")
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.mark.skipif(not ST.exists() and shutil.which("st") is None, reason="schemathesis (dev dependency) missing")
async def test_schemathesis_finds_no_contract_failure(tmp_path: Path) -> None:
    async with live_service(auth_settings(tmp_path, approvals={"allow_self_approval": True})) as live:
        key = await make_key(live, "contract", "default", "admin")
        with anyio.fail_after(600):
            result = await anyio.run_process(
                [
                    str(ST if ST.exists() else shutil.which("st")),
                    "--config-file",
                    str(CONFIG),
                    "run",
                    f"{live.url}/openapi.json",
                    "--checks",
                    "all",
                    "--max-examples",
                    "25",
                    "--seed",
                    "1",
                    "--header",
                    f"Authorization: Bearer {key}",
                    "--no-color",
                    "--workers",  # operations split over two workers: the same examples, half the wall time
                    "2",
                ],
                check=False,
                cwd=tmp_path,
            )
    output = result.stdout.decode(errors="replace")
    assert result.returncode == 0, output[-6000:]
    assert "No issues found" in output or " passed" in output, output[-2000:]
