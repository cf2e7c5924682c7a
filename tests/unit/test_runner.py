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


def test_a_new_apply_waits_for_the_ansible_run_a_killed_apply_left(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The killed apply's run is finishing a step (say a restart): the next apply must read the
    hosts after it, or it would restart the same service again."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    d = make_run_dir(tmp_path, "orphan", dead_pid(), 600)
    (d / "cluster").write_text("lab")
    other = make_run_dir(tmp_path, "other-cluster", dead_pid(), 600)
    (other / "cluster").write_text("elsewhere")
    (other / "artifacts" / "abc").mkdir(parents=True)
    (other / "artifacts" / "abc" / "stdout").write_text(
        "PLAY [service] ****\n\nTASK [go-ahead] ****\nok: [kf2]\n\nTASK [Wait for kafka on port 9092] ****\n")
    # stand-ins for ansible-playbook: their argv names the run dir, as Ansible's does
    mine = subprocess.Popen(["sh", "-c", "sleep 0.6", f"{d}/inventory/hosts.json"])
    theirs = subprocess.Popen(["sh", "-c", "sleep 30", f"{other}/inventory/hosts.json"])
    try:
        assert list(runner.orphaned_runs("lab")) == [d]
        runner.sweep_orphans()
        assert d.exists() and other.exists(), "a run dir in use is never swept"
        said: list[str] = []
        t0 = time.monotonic()
        runner.wait_for_orphans("lab", timeout_s=20, progress=said.append)
        assert mine.poll() is not None and time.monotonic() - t0 < 10
        assert len(said) == 1 and "interrupted apply" in said[0]
        at = rf"\(pids {theirs.pid}, at TASK \[Wait for kafka on port 9092\]\)"
        with pytest.raises(runner.OrphanedRunStillRunning, match=rf"still running after 0s {at}"):
            runner.wait_for_orphans("elsewhere", timeout_s=0)
    finally:
        mine.kill()
        theirs.kill()
        mine.wait()
        theirs.wait()
