"""Run dirs of killed kafkaform processes (rendered files, maybe secrets) are swept; live ones stay."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from reconciler.apply import runner


def make_run_dir(base: Path, name: str, pid: int, age_s: float) -> Path:
    d = base / f"{runner.PDD_PREFIX}{name}"
    d.mkdir()
    (d / "owner.pid").write_text(str(pid))
    (d / "inventory").write_text("secret")
    old = time.time() - age_s
    os.utime(d, (old, old))
    return d


def dead_pid() -> int:
    p = subprocess.Popen(["true"])
    p.wait()
    return p.pid


def test_sweep_removes_old_dirs_of_dead_owners_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = make_run_dir(tmp_path, "dead-old", dead_pid(), 600)
    young = make_run_dir(tmp_path, "dead-young", dead_pid(), 5)  # an orphaned run may still use it
    live = make_run_dir(tmp_path, "live", os.getpid(), 600)
    other = tmp_path / "unrelated"
    other.mkdir()
    runner.sweep_orphans()
    assert not gone.exists()
    assert young.exists() and live.exists() and other.exists()
