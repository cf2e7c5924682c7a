"""Shared bits for benchmarks: timing, inventory files for plain Ansible baselines."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def timed(fn: Callable[[], Any], runs: int) -> tuple[float, list[float], Any]:
    """Median wall time of `runs` calls (and all samples, and the last result)."""
    samples = []
    result = None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples), samples, result


def run(argv: list[str], env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    # Bytecode is written and reused, as for an installed kafkaform (this sandbox sets
    # PYTHONDONTWRITEBYTECODE, which would recompile every module on every run of both tools).
    base = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    p = subprocess.run(argv, text=True, capture_output=True, env={**base, **(env or {})})
    if check and p.returncode not in (0, 2):
        raise SystemExit(f"{' '.join(argv)} exited {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


def write_inventory(inv: dict[str, Any], path: Path) -> Path:
    """The inventory as kafkaform's runs see it (file contents base64, no template syntax)."""
    from reconciler.apply.runner import check_no_templates

    check_no_templates(inv)
    path.write_text(json.dumps(inv))
    return path


def fmt(samples: list[float]) -> str:
    return "[" + ", ".join(f"{x:.2f}" for x in samples) + "]"
