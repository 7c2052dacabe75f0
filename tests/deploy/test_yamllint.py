"""yamllint, with the repository's .yamllint, on every deployment YAML file (warnings count too)."""

from __future__ import annotations

from pathlib import Path

import pytest
from yamllint import linter
from yamllint.config import YamlLintConfig

from tests.deploy.deploy_files import K8S, ROOT

FILES = [*sorted(K8S.glob("*.yaml")), ROOT / "docker-compose.yml", ROOT / ".yamllint"]


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_yaml_file_passes_yamllint(path: Path) -> None:
    config = YamlLintConfig(file=str(ROOT / ".yamllint"))
    problems = list(linter.run(path.read_text(encoding="utf-8"), config, str(path)))
    assert not problems, "\n".join(f"{path.name}:{p.line}:{p.column} {p.rule}: {p.desc}" for p in problems)
