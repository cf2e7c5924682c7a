"""The lint and type checks are part of the unit suite: ruff on all code, mypy on reconciler/
(its settings are in pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True, timeout=600)


def test_ruff_is_clean() -> None:
    p = _run("ruff", "check", "reconciler", "tests", "bench")
    assert p.returncode == 0, f"ruff check failed (exit {p.returncode}):\n{p.stdout}{p.stderr}"


def test_mypy_is_clean() -> None:
    p = _run("mypy", "reconciler")
    assert p.returncode == 0, f"mypy reconciler failed (exit {p.returncode}):\n{p.stdout}{p.stderr}"
