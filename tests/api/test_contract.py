"""The published OpenAPI document is exact: schemathesis, with all its checks, finds no failure.

It runs the real ``st`` CLI (schemathesis 4) against the live service: examples, coverage,
fuzzing and stateful phases, a fixed seed and a bounded number of examples per operation, so the
run is repeatable and takes a minute or two."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import anyio
import pytest

from tests.support.harness import live_service, make_settings

ST = Path(sys.executable).with_name("st")
CONFIG = Path(__file__).with_name("schemathesis.toml")


@pytest.mark.skipif(not ST.exists() and shutil.which("st") is None, reason="schemathesis (dev dependency) missing")
async def test_schemathesis_finds_no_contract_failure(tmp_path: Path) -> None:
    async with live_service(make_settings(tmp_path)) as live:
        with anyio.fail_after(400):
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
                    "--no-color",
                ],
                check=False,
                cwd=tmp_path,
            )
    output = result.stdout.decode(errors="replace")
    assert result.returncode == 0, output[-6000:]
    assert "No issues found" in output or " passed" in output, output[-2000:]
