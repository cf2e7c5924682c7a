"""Shared fixtures for integration tests: a real 3-host lab and a kafkaform CLI runner.

The lab is module-scoped per test module that asks for it and is always taken down, even when a
test fails, so the next run starts clean.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
LAB_SPEC = REPO / "examples" / "lab-zookeeper.yaml"  # ZooKeeper mode, Kafka 3.9.1
KRAFT_LAB_SPEC = REPO / "examples" / "lab.yaml"  # the default: KRaft, Kafka 4.4.0


def _need_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("integration tests need root (systemd-nspawn lab hosts)")


@dataclass
class Cli:
    """Runs the real `kafkaform` entry point in a subprocess, as a user would."""

    env: dict[str, str]

    def __call__(self, *args: str, timeout: float = 900, check: bool = False) -> subprocess.CompletedProcess[str]:
        p = subprocess.run([sys.executable, "-m", "reconciler.cli", *args], env=self.env, text=True,
                           capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)
        if check and p.returncode != 0:
            raise AssertionError(f"kafkaform {' '.join(args)} exited {p.returncode}\n{p.stdout}\n{p.stderr}")
        return p


@pytest.fixture(scope="session", autouse=True)
def no_run_dirs_left() -> Iterator[None]:
    """Tests kill kafkaform on purpose; the run dirs those processes leave go at the end."""
    yield
    from reconciler.apply.runner import sweep_orphans

    sweep_orphans(min_age_s=0)


@pytest.fixture(scope="session")
def kf_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("kafkaform-home")


@pytest.fixture(scope="session")
def cli(kf_home: Path) -> Iterator[Cli]:
    env = dict(os.environ)
    env["KAFKAFORM_HOME"] = str(kf_home)
    yield Cli(env)
    from reconciler.observe import openssh

    openssh.close_masters(kf_home, remove_dir=True)  # the SSH master connections kafkaform kept to the lab hosts


@contextlib.contextmanager
def lab_for(cli: Cli, spec: Path, cluster: str) -> Iterator[Path]:
    """Bare lab hosts for a spec's addresses, always removed afterwards with the cluster's control state."""
    _need_root()
    from reconciler import lab

    lab.down(grace=1.0)
    try:
        cli("lab", "up", str(spec), check=True, timeout=1200)
        yield spec
    finally:
        lab.down(grace=1.0)  # the hosts go with their data: no clean shutdown to wait for
        shutil.rmtree(Path(cli.env["KAFKAFORM_HOME"]) / "clusters" / cluster, ignore_errors=True)


@pytest.fixture(scope="module")
def lab3(cli: Cli) -> Iterator[Path]:
    """Three bare lab hosts for examples/lab-zookeeper.yaml; yields the spec path."""
    with lab_for(cli, LAB_SPEC, "lab") as spec:
        yield spec


def tinfra(address: str, tmp: Path):  # noqa: ANN201 - testinfra.host.Host
    """testinfra over paramiko with strict host keys from the lab's known_hosts."""
    import testinfra

    from reconciler import lab

    cfg = tmp / "ssh_config"
    cfg.write_text(f"Host *\n  User root\n  IdentityFile {lab.key_path()}\n"
                   f"  UserKnownHostsFile {lab.known_hosts_path()}\n  StrictHostKeyChecking yes\n")
    return testinfra.get_host(f"paramiko://root@{address}", ssh_config=str(cfg))


def write_spec(base: Path, dest: Path, **changes: object) -> Path:
    """A copy of a spec with top-level dotted-path edits, e.g. {"kafka.config.x": 1}."""
    data = yaml.safe_load(base.read_text())
    for dotted, value in changes.items():
        parts = dotted.split("/")
        cur = data
        for p in parts[:-1]:
            cur = cur.setdefault(p, {})
        cur[parts[-1]] = value
    dest.write_text(yaml.safe_dump(data, sort_keys=False))
    return dest


def unit_logs(names: list[str], unit: str, since: float, lines: int = 40) -> str:
    """The last journal lines of `unit` on each lab host since `since`, for a failure message: what
    the hosts did while a step ran longer than it should."""
    from reconciler import lab

    out = []
    for name in names:
        r = lab.exec_in(name, ["journalctl", "--no-pager", "-o", "short-precise", "-u", f"{unit}.service",
                               f"--since=@{int(since)}", "-n", str(lines)])
        out.append(f"--- {name} {unit}.service ---\n{r.stdout}{r.stderr}")
    return "\n".join(out)


def unit_starts(name: str, unit: str, since: float) -> int:
    """How many times systemd started `unit` on lab host `name` since the epoch time `since` (its
    journal's "Started" lines): what a restart really did, whatever kafkaform's journal says."""
    from reconciler import lab

    out = lab.exec_in(name, ["journalctl", "--no-pager", "-o", "cat", "-u", f"{unit}.service",
                             f"--since=@{int(since)}"], check=True).stdout
    return sum(line.startswith(f"Started {unit}.service") for line in out.splitlines())
