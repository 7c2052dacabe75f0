"""The README's commands on a stock machine: ``scripts/uv.sh`` bootstraps uv without touching the
system Python (PEP 668), ``./scripts/serve`` keeps the test environment and compiles bytecode, and so
does the image."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.deploy.deploy_files import ROOT, Dockerfile

DEBIAN_PYTHON = Path("/usr/bin/python3")


def _commands(script: Path) -> list[list[str]]:
    lines = [line.strip() for line in script.read_text(encoding="utf-8").splitlines()]
    return [shlex.split(line) for line in lines if line and not line.startswith("#")]


def test_uv_sh_bootstraps_uv_into_a_private_virtualenv_when_none_is_on_path(tmp_path: Path) -> None:
    python = DEBIAN_PYTHON if DEBIAN_PYTHON.is_file() else Path(shutil.which("python3") or "python3")
    if subprocess.run([python, "-c", "import venv, ensurepip"], capture_output=True, check=False).returncode:
        pytest.skip(f"{python} cannot create virtualenvs (python3-venv is not installed)")
    # A project copy and a PATH with python3 and the few tools the script uses, but no uv.
    (tmp_path / "project" / "scripts").mkdir(parents=True)
    script = tmp_path / "project" / "scripts" / "uv.sh"
    shutil.copy(ROOT / "scripts" / "uv.sh", script)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "rm"):
        found = shutil.which(tool)
        assert found is not None
        (bin_dir / tool).symlink_to(found)
    (bin_dir / "python3").symlink_to(python)
    env = {**os.environ, "PATH": str(bin_dir)}
    env.pop("PYTHON", None)
    env.pop("VIRTUAL_ENV", None)
    first = subprocess.run(
        ["bash", str(script), "--version"], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("uv 0.13.")
    assert "installing it into" in first.stderr and "externally-managed" not in first.stderr
    assert (tmp_path / "project" / ".tools" / "uv" / "bin" / "uv").is_file()
    again = subprocess.run(
        ["bash", str(script), "--version"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert again.returncode == 0 and again.stdout == first.stdout and again.stderr == ""  # no second install


def test_serve_syncs_without_removing_the_dev_environment_and_compiles_bytecode() -> None:
    commands = _commands(ROOT / "scripts" / "serve")
    syncs = [c for c in commands if "sync" in c and "scripts/uv.sh" in c]
    runs = [c for c in commands if "run" in c and "scripts/uv.sh" in c]
    serves = [c for c in runs if "serve" in c]
    compiles = [c for c in runs if "compileall" in c]
    assert len(syncs) == 1 and len(serves) == 1 and len(compiles) == 1 and len(runs) == 2
    # --no-dev alone would uninstall pytest, mypy, ... that ./scripts/test put into the same .venv
    assert {"--frozen", "--no-dev", "--inexact", "--compile-bytecode"} <= set(syncs[0])
    # --compile-bytecode covers the installed packages; the project is installed editable (src/)
    assert compiles[0][-1] == "src"
    assert all("--no-sync" in c for c in runs)  # `uv run` must not re-sync the environment its own way


def test_the_image_compiles_bytecode_at_install(dockerfile: Dockerfile) -> None:
    assert dockerfile.env("builder").get("UV_COMPILE_BYTECODE") == "1"
    assert dockerfile.env().get("PYTHONDONTWRITEBYTECODE") == "1"  # hence compiled at build, not at start
