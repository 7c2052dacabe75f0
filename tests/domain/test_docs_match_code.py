"""The state diagram in docs/architecture.md shows exactly the transitions the code allows."""

from __future__ import annotations

import re
from pathlib import Path

from agent_runtime.domain.states import TRANSITIONS

DOC = Path(__file__).resolve().parents[2] / "docs" / "architecture.md"
EDGE = re.compile(r"^\s+([a-z_]+) --> ([a-z_]+)", re.MULTILINE)


def test_the_architecture_state_diagram_matches_the_transition_table() -> None:
    diagram = DOC.read_text().split("stateDiagram-v2", 1)[1].split("```", 1)[0]
    drawn = {(a, b) for a, b in EDGE.findall(diagram)}
    allowed = {(str(a), str(b)) for a, targets in TRANSITIONS.items() for b in targets}
    assert drawn == allowed
