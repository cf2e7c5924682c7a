"""Processes, cgroups and mounts on the control machine, by pid, host name or path.

Knows nothing of lab state: ``down`` must be able to kill and unmount with no (or a broken) state.json.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

from .control import _run
from .paths import CGROUP_HIERARCHIES, CGROUP_NAME, NSPAWN_RUNTIME, NSPAWN_TMPFS_SOURCE, LabError

# Popen objects of nspawn processes started by this Python process: polled so they do not linger as
# zombies (a zombie still answers kill(pid, 0), which would look like a running host).
_children: dict[int, subprocess.Popen[bytes]] = {}
_children_lock = threading.Lock()


def _mounts() -> list[tuple[str, str, str]]:
    """(mount point, fs type, source) of the control machine's mount namespace, in mount order."""
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        mp = left.split()[4].replace("\\040", " ")
        fstype, source = right.split()[:2]
        out.append((mp, fstype, source))
    return out


def _is_mountpoint(p: str | Path) -> bool:
    p = str(Path(p))
    return any(mp == p for mp, _, _ in _mounts())


def _mounts_under(d: Path) -> list[str]:
    prefix = str(d).rstrip("/") + "/"
    return [mp for mp, _, _ in _mounts() if mp.startswith(prefix) or mp == str(d)]


def _ensure_nspawn_runtime() -> None:
    """nspawn needs a tmpfs-like /run/systemd/nspawn (propagation dir); mount one only when missing."""
    if _is_mountpoint(NSPAWN_RUNTIME):
        return
    run_fs = next((t for mp, t, _ in reversed(_mounts()) if mp == "/run"), None)
    if run_fs == "tmpfs":
        return
    NSPAWN_RUNTIME.mkdir(parents=True, exist_ok=True)
    _run(["mount", "-t", "tmpfs", "-o", "mode=755", NSPAWN_TMPFS_SOURCE, str(NSPAWN_RUNTIME)])


def _unmount_nspawn_runtime() -> None:
    for mp, fstype, source in reversed(_mounts()):
        if mp == str(NSPAWN_RUNTIME) and fstype == "tmpfs" and source == NSPAWN_TMPFS_SOURCE:
            _run(["umount", str(NSPAWN_RUNTIME)], check=False)


def _unmount_under(d: Path) -> None:
    for _ in range(3):
        mps = _mounts_under(d)
        if not mps:
            return
        for mp in sorted(set(mps), key=len, reverse=True):
            cp = _run(["umount", mp], check=False)
            if cp.returncode != 0 and _is_mountpoint(mp):
                _run(["umount", "-l", mp], check=False)


def _pid_alive(pid: int | None) -> bool:
    """True if *pid* runs and is not a zombie (zombies answer kill(0) too)."""
    if not pid:
        return False
    with _children_lock:
        child = _children.get(pid)
        if child is not None and child.poll() is not None:
            _children.pop(pid, None)
            return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _wait_dead(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _pid_alive(pid):
            return True
        time.sleep(0.1)
    return not _pid_alive(pid)


def _container_init_pid(nspawn_pid: int) -> int | None:
    """PID (in our namespace) of the container's init: the child of nspawn living in another pid ns."""
    own_ns = os.readlink("/proc/self/ns/pid")
    try:
        children_files = list(Path(f"/proc/{nspawn_pid}/task").glob("*/children"))
    except OSError:
        return None
    for cf in children_files:
        with contextlib.suppress(OSError):
            for c in cf.read_text().split():
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{c}/ns/pid") != own_ns:
                        return int(c)
    return None


def _cgroup_dir(hierarchy: str, name: str | None = None) -> Path:
    p = Path("/sys/fs/cgroup") / hierarchy / CGROUP_NAME
    return p / name if name else p


def _subtree_dirs(root: Path) -> list[Path]:
    """Every directory under *root* (itself included), walked so that cgroups vanishing mid-walk
    (a unit inside a host stopping) are skipped: ``Path.rglob`` raises FileNotFoundError on them."""
    return [Path(d) for d, _, _ in os.walk(root)]


def _subtree_pids(root: Path) -> set[int]:
    """Every process in the cgroup subtree at *root*; cgroups that vanish while read are skipped."""
    pids: set[int] = set()
    for d in _subtree_dirs(root):
        with contextlib.suppress(OSError, ValueError):
            pids.update(int(x) for x in (d / "cgroup.procs").read_text().split())
    return pids


def _cgroup_pids(name: str | None) -> set[int]:
    """Every process in a host's cgroup subtree (both hierarchies); with no name, the whole lab's."""
    pids: set[int] = set()
    for hier in CGROUP_HIERARCHIES:
        pids |= _subtree_pids(_cgroup_dir(hier, name))
    return pids


def _kill_cgroup(name: str) -> int:
    n = 0
    for pid in _cgroup_pids(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            n += 1
    return n


def _cgroup_procs_files(name: str) -> list[str]:
    files = []
    for hier in CGROUP_HIERARCHIES:
        d = _cgroup_dir(hier, name)
        d.mkdir(parents=True, exist_ok=True)
        files.append(str(d / "cgroup.procs"))
    return files


# `sh` moves itself into the host's cgroups, then execs the payload (thread-safe, unlike preexec_fn).
_ENTER_CGROUP = 'for f in "$1" "$2"; do echo $$ > "$f" || exit 125; done; shift 2; exec "$@"'


# exec_in: best effort (a cgroup v2 inner node with controllers enabled refuses processes).
_ENTER_CGROUP_TRY = 'for f in "$1" "$2"; do echo $$ 2>/dev/null > "$f" || :; done; shift 2; exec "$@"'


def _kill_all_lab_cgroups() -> None:
    for _ in range(30):
        pids = _cgroup_pids(None)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _remove_cgroups() -> None:
    """rmdir the kflab trees deepest first; emptied cgroups can stay busy for a moment, so retry."""
    for _ in range(20):
        left = False
        for hier_dir in Path("/sys/fs/cgroup").iterdir():
            root = hier_dir / CGROUP_NAME
            if not root.is_dir():
                continue
            for p in sorted(_subtree_dirs(root), key=lambda p: len(p.parts), reverse=True):
                try:
                    p.rmdir()
                except FileNotFoundError:
                    pass
                except OSError:
                    left = True
        if not left:
            return
        time.sleep(0.25)
    raise LabError(f"could not remove cgroups {CGROUP_NAME} (processes still in them?)")
