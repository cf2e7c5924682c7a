"""The control machine: running its commands, checking it can host a lab, the lab lock."""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path

from .paths import CGROUP_HIERARCHIES, LabError, lab_dir


def _run(
    argv: Sequence[str], *, check: bool = True, timeout: float | None = 120, input: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command on the control machine; a failure becomes a LabError quoting its stderr."""
    try:
        cp = subprocess.run(
            list(argv),
            input=input.decode() if input else None,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except FileNotFoundError as e:
        raise LabError(f"command not found: {argv[0]}") from e
    except subprocess.TimeoutExpired as e:
        raise LabError(f"command timed out after {timeout} s: {' '.join(argv)}") from e
    if check and cp.returncode != 0:
        raise LabError(
            f"command failed ({cp.returncode}): {' '.join(argv)}: {cp.stderr.strip() or cp.stdout.strip()}"
        )
    return cp


_PREREQS = {
    "systemd-nspawn": "apt-get install -y --no-install-recommends systemd-container",
    "ip": "apt-get install -y --no-install-recommends iproute2",
    "nsenter": "apt-get install -y --no-install-recommends util-linux",
    "mount": "apt-get install -y --no-install-recommends mount",
}


def check_prerequisites(*, need_debootstrap: bool = False) -> None:
    """Fail early and clearly when the control machine cannot run a lab."""
    if os.geteuid() != 0:
        raise LabError("the lab needs root (network namespaces, overlay mounts, systemd-nspawn): run as root")
    needed = dict(_PREREQS)
    if need_debootstrap:
        needed["debootstrap"] = "apt-get install -y --no-install-recommends debootstrap"
    missing = [(cmd, fix) for cmd, fix in needed.items() if shutil.which(cmd) is None]
    if missing:
        lines = "; ".join(f"{cmd} not found (install: {fix})" for cmd, fix in missing)
        raise LabError(f"missing lab prerequisites: {lines}")
    if "overlay" not in Path("/proc/filesystems").read_text():
        raise LabError("the kernel has no overlayfs (try: modprobe overlay)")
    for h in CGROUP_HIERARCHIES:
        if not Path(f"/sys/fs/cgroup/{h}").is_dir():
            raise LabError(
                f"/sys/fs/cgroup/{h} is missing: the lab needs the hybrid cgroup layout "
                "(name=systemd v1 hierarchy + unified v2)"
            )


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """Serialise lab operations (two `lab up` at once would fight over the same netns/dirs)."""
    d = lab_dir()
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
