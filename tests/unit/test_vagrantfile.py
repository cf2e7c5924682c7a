"""The Vagrantfile is only syntax-checked here (QEMU/KVM guests do not boot on this machine kind)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from reconciler.spec import load_spec

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(shutil.which("ruby") is None, reason="ruby is not installed (.ci/install installs it)")
def test_vagrantfile_is_valid_ruby() -> None:
    p = subprocess.run(["ruby", "-c", str(REPO / "Vagrantfile")], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "Syntax OK" in p.stdout


def test_vagrantfile_matches_vagrant_spec() -> None:
    ips = set(re.findall(r'"(\d+\.\d+\.\d+\.\d+)"', (REPO / "Vagrantfile").read_text()))
    spec = load_spec(REPO / "examples" / "vagrant.yaml")
    assert ips == set(spec.hosts())
