"""Names, addresses and places of the lab, and its error type.

The bottom of the package (imports nothing from it), so every other lab module can use these.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

Progress = Callable[[str], None] | None

BRIDGE = "kflab0"
NET_PREFIX = "10.213.0"
GATEWAY = f"{NET_PREFIX}.1"
PREFIX_LEN = 24
MAX_HOSTS = 60
CGROUP_NAME = "kflab"
CGROUP_HIERARCHIES = ("systemd", "unified")
NSPAWN_RUNTIME = Path("/run/systemd/nspawn")
NSPAWN_TMPFS_SOURCE = "kflab"  # the tmpfs source name marks "mounted by the lab" (down unmounts only that)

_HOST_RE = re.compile(r"^kf([1-9][0-9]*)$")
_VETH_RE = re.compile(r"^kf[1-9][0-9]*-br$")


class LabError(Exception):
    """A lab operation failed; the message says what and, where possible, how to fix it."""


def lab_dir() -> Path:
    """Lab state directory: ``$KAFKAFORM_LAB_DIR`` or ``/var/lib/kafkaform/lab``."""
    return Path(os.environ.get("KAFKAFORM_LAB_DIR") or "/var/lib/kafkaform/lab")


def cache_dir() -> Path:
    """Control-machine cache: ``$KAFKAFORM_CACHE`` or ``/var/cache/kafkaform``."""
    return Path(os.environ.get("KAFKAFORM_CACHE") or "/var/cache/kafkaform")


def base_dir() -> Path:
    """The cached base rootfs shared (read-only, as overlay lower dir) by all lab hosts."""
    return cache_dir() / "lab-base"


def key_path() -> Path:
    """Private SSH key the control machine uses for root on every lab host."""
    return lab_dir() / "lab_key"


def known_hosts_path() -> Path:
    return lab_dir() / "known_hosts"


def state_path() -> Path:
    return lab_dir() / "state.json"


def host_name(i: int) -> str:
    """Name of lab host *i* (1-based)."""
    return f"kf{i}"


def host_address(i: int) -> str:
    """Address of lab host *i* (1-based): ``10.213.0.(10+i)``."""
    if not 1 <= i <= MAX_HOSTS:
        raise LabError(f"host index {i} out of range 1..{MAX_HOSTS}")
    return f"{NET_PREFIX}.{10 + i}"


def _notify(progress: Progress, msg: str) -> None:
    if progress is not None:
        progress(msg)
