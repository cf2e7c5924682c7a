"""Blank block devices for lab hosts, for the spec's `security.volumes`: a sparse file per device in
the host's dir, attached to a loop device of this machine and bound into the host's nspawn at the
path the spec names (e.g. /dev/vdb). kafkaform then probes and formats a real block device there.

Loop devices are machine-wide: `detach_all` (called by `lab down`) detaches every loop device whose
backing file is in the lab dir, before the files go, whatever the state file says.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .paths import LabError

DISK_MIB = 64  # LUKS2's header takes 16 MiB; the rest holds a small filesystem


def image(host_dir: str, device: str) -> Path:
    return Path(host_dir) / "disks" / (device.strip("/").replace("/", "_") + ".img")


def _loops_of(img: Path) -> list[str]:
    cp = subprocess.run(["losetup", "-n", "-O", "NAME", "-j", str(img)], capture_output=True, text=True)
    return [line.strip() for line in cp.stdout.splitlines() if line.strip()]


def attach(host_dir: str, devices: list[str]) -> list[tuple[str, str]]:
    """(loop device, device path in the host) for each device; files and loops made where missing."""
    out = []
    for dev in devices:
        img = image(host_dir, dev)
        if not img.exists():
            img.parent.mkdir(parents=True, exist_ok=True)
            with open(img, "wb") as f:
                f.truncate(DISK_MIB * 2**20)
        loops = _loops_of(img)
        if not loops:
            cp = subprocess.run(["losetup", "-f", "--show", str(img)], capture_output=True, text=True)
            if cp.returncode != 0:
                raise LabError(f"cannot attach a loop device for {dev} ({img}): {cp.stderr.strip()}")
            loops = [cp.stdout.strip()]
        out.append((loops[0], dev))
    return out


def attached(lab_dir: Path) -> list[str]:
    """Loop devices backed by lab disk images (for `lab down`'s checks and the tests)."""
    images = sorted(lab_dir.glob("kf*/disks/*.img")) if lab_dir.exists() else []
    return [loop for img in images for loop in _loops_of(img)]


def detach_all(lab_dir: Path) -> list[str]:
    """Detach every loop device backed by a lab disk image; returns what was detached."""
    gone = attached(lab_dir)
    for loop in gone:
        subprocess.run(["losetup", "-d", loop], capture_output=True)
    return gone
