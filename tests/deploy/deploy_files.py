"""Readers for the deployment files (Dockerfile, compose, Kubernetes manifests).

Everything here reads files; nothing needs Docker, a cluster or the network.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int
    stage: str


@dataclass
class Dockerfile:
    instructions: list[Instruction]
    comments: dict[int, str] = field(default_factory=dict)
    """Line number -> comment text (without ``#``), for checking that pragmas are justified."""

    def all(self, keyword: str, stage: str | None = None) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword and (stage is None or i.stage == stage)]

    def last(self, keyword: str) -> Instruction:
        """The effective instruction of the final stage (later ones override earlier ones)."""
        final = self.instructions[-1].stage
        found = self.all(keyword, final)
        assert found, f"the final stage has no {keyword}"
        return found[-1]

    def exec_form(self, keyword: str) -> list[str]:
        """CMD/ENTRYPOINT in exec (JSON) form; shell form would break signal handling."""
        args = self.last(keyword).args
        value = json.loads(args)
        assert isinstance(value, list), f"{keyword} must use the exec form, got {args!r}"
        return [str(v) for v in value]

    def env(self, stage: str | None = None) -> dict[str, str]:
        """ENV values of a stage (default: the final one), ``${VAR}`` references left as written."""
        stage = stage or self.instructions[-1].stage
        values: dict[str, str] = {}
        for instruction in self.all("ENV", stage):
            for token in shlex.split(instruction.args):
                key, sep, value = token.partition("=")
                assert sep, f"line {instruction.line}: use ENV KEY=value, got {token!r}"
                values[key] = value
        return values


def parse_dockerfile(path: Path) -> Dockerfile:
    instructions: list[Instruction] = []
    comments: dict[int, str] = {}
    stage = ""
    pending = ""
    start = 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = raw.strip()
        if stripped.startswith("#"):
            comments[number] = stripped[1:].strip()
            continue
        if not stripped and not pending:
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = (pending + stripped).strip()
        pending = ""
        keyword, _, args = text.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            match = re.search(r"\bAS\s+(\S+)\s*$", args, flags=re.IGNORECASE)
            stage = match.group(1) if match else f"stage{len(instructions)}"
        instructions.append(Instruction(keyword, args.strip(), start, stage))
    return Dockerfile(instructions, comments)


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as stream:
        return [doc for doc in yaml.safe_load_all(stream) if doc]


def manifest_files() -> list[Path]:
    """Every Kubernetes manifest in k8s/ (the kustomization itself is not one)."""
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


def only(resources: dict[tuple[str, str], dict[str, Any]], kind: str) -> dict[str, Any]:
    matches = [doc for (k, _), doc in resources.items() if k == kind]
    assert len(matches) == 1, f"expected one {kind}, found {len(matches)}"
    return matches[0]


def cli_port(args: list[str]) -> int:
    """The value of ``--port`` in an argument list."""
    assert "--port" in args, f"no --port in {args}"
    return int(args[args.index("--port") + 1])
