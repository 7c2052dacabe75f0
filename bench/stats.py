"""Small helpers shared by the benchmark scripts: percentiles, summaries, the code version measured."""

from __future__ import annotations

import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]


def pct(values: list[float], q: float) -> float:
    """Percentile ``q`` (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(values: list[float]) -> dict[str, float]:
    return {
        "n": len(values),
        "min": min(values, default=float("nan")),
        "p50": pct(values, 50),
        "p95": pct(values, 95),
        "p99": pct(values, 99),
        "max": max(values, default=float("nan")),
        "mean": statistics.fmean(values) if values else float("nan"),
    }


def code_version() -> dict[str, Any]:
    """The commit measured, and whether src/ differed from it (the tree may be shared)."""

    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip()

    return {"commit": git("rev-parse", "--short", "HEAD"), "src_modified": bool(git("status", "--porcelain", "src"))}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)
