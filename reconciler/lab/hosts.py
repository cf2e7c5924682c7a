"""One host's lifecycle: boot its nspawn in its cgroup, wait for its SSH, power it off and on, run
commands inside it, measure its memory."""

from __future__ import annotations

import base64
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from . import disks
from .cgroups import (
    _ENTER_CGROUP,
    _ENTER_CGROUP_TRY,
    _cgroup_pids,
    _cgroup_procs_files,
    _children,
    _children_lock,
    _container_init_pid,
    _ensure_nspawn_runtime,
    _kill_cgroup,
    _pid_alive,
    _wait_dead,
)
from .control import _locked, check_prerequisites
from .network import _ensure_bridge, _ensure_netns
from .paths import LabError, Progress, _notify, key_path, known_hosts_path
from .rootfs import _prepare_host
from .state import LabHost, _is_nspawn_of, _refresh, _require_state, _save, status

SSH_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0


def _launch(h: LabHost) -> int:
    """Start the host's nspawn in its own session and cgroup; return its pid."""
    if _pid_alive(h.pid) and h.pid is not None and _is_nspawn_of(h.pid, h):
        return h.pid
    argv = [
        "systemd-nspawn",
        "-q",
        "-D",
        h.root,
        "--boot",
        f"--machine={h.name}",
        f"--network-namespace-path=/run/netns/{h.name}",
        "--register=no",
        "--keep-unit",  # no systemd/D-Bus on the control machine to register with
        "--console=read-only",
        "--resolv-conf=off",  # ours is in the upper dir (see _prepare_host)
        *(f"--bind={loop}:{dev}" for loop, dev in disks.attach(h.dir, h.disks)),
    ]
    with open(h.log, "ab") as log:
        p = subprocess.Popen(
            ["/bin/sh", "-c", _ENTER_CGROUP, "sh", *_cgroup_procs_files(h.name), *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    with _children_lock:
        _children[p.pid] = p
    (Path(h.dir) / "nspawn.pid").write_text(f"{p.pid}\n")
    h.pid = p.pid
    return p.pid


def _read_host_key(h: LabHost) -> str | None:
    """The host's generated ed25519 host key, read from its disk (overlay upper dir)."""
    f = Path(h.upper) / "etc/ssh/ssh_host_ed25519_key.pub"
    try:
        parts = f.read_text().split()
    except OSError:
        return None
    if len(parts) < 2 or parts[0] != "ssh-ed25519":
        return None
    return f"{parts[0]} {parts[1]}"


def _log_tail(h: LabHost, lines: int = 12) -> str:
    try:
        return "\n".join(Path(h.log).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no nspawn log)"


def _wait_ssh(h: LabHost, timeout: float | None = None) -> str:
    """Wait until the host's sshd accepts the lab key while presenting its own generated host key.

    Returns the host key line. Raises LabError naming the host on timeout or when nspawn exits.
    """
    import paramiko

    timeout = SSH_TIMEOUT_S if timeout is None else timeout
    deadline = time.monotonic() + timeout
    pkey = paramiko.Ed25519Key.from_private_key_file(str(key_path()))
    last = "no host key generated yet"
    while time.monotonic() < deadline:
        if not _pid_alive(h.pid):
            raise LabError(
                f"lab host {h.name} did not come up: systemd-nspawn exited; log {h.log}:\n{_log_tail(h)}"
            )
        hk = _read_host_key(h)
        if hk is None:
            time.sleep(0.2)
            continue
        client = paramiko.SSHClient()
        key_type, b64 = hk.split()
        client.get_host_keys().add(h.address, key_type, paramiko.Ed25519Key(data=base64.b64decode(b64)))
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        try:
            client.connect(
                h.address,
                username="root",
                pkey=pkey,
                timeout=3,
                banner_timeout=5,
                auth_timeout=5,
                allow_agent=False,
                look_for_keys=False,
            )
            return hk
        except (OSError, paramiko.SSHException, EOFError) as e:
            last = f"{type(e).__name__}: {e}"
            time.sleep(0.25)
        finally:
            client.close()
    raise LabError(
        f"lab host {h.name} ({h.address}) did not accept SSH within {timeout:.0f} s (last: {last}); "
        f"nspawn log {h.log}:\n{_log_tail(h)}"
    )


def _write_known_hosts(hosts: list[LabHost]) -> None:
    lines = []
    for h in hosts:
        hk = _read_host_key(h)
        if hk:
            lines.append(f"{h.name},{h.address} {hk}")
    tmp = known_hosts_path().with_suffix(".tmp")
    tmp.write_text("\n".join(lines) + ("\n" if lines else ""))
    os.replace(tmp, known_hosts_path())


def _stop(h: LabHost, grace: float = STOP_GRACE_S) -> None:
    """Power a host off: SIGTERM to nspawn (clean shutdown), then SIGKILL its whole cgroup after *grace*."""
    pid = h.pid
    if pid and _pid_alive(pid) and _is_nspawn_of(pid, h):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        if not _wait_dead(pid, grace):
            _kill_cgroup(h.name)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_dead(pid, 5)
    # anything left in the host's cgroup (e.g. exec_in leftovers, a half-started nspawn) goes too
    for _ in range(20):
        if not _cgroup_pids(h.name):
            break
        _kill_cgroup(h.name)
        time.sleep(0.1)
    h.pid = None
    h.running = False
    with _children_lock:
        for cpid, child in list(_children.items()):
            if child.poll() is not None:
                _children.pop(cpid, None)


def stop_host(name: str, progress: Progress = None) -> LabHost:
    """Power a host off (clean shutdown, SIGKILL of its cgroup after a grace period). Its disk
    (overlay upper dir) and network stay, so ``start_host`` boots the same machine again."""
    check_prerequisites()
    with _locked():
        state = _require_state()
        h = state.host(name)
        _notify(progress, f"stopping {name}")
        _stop(h)
        _save(state)
    return h


def start_host(name: str, progress: Progress = None) -> LabHost:
    """Power a stopped host on again (same disk, address and host key) and wait for SSH."""
    check_prerequisites()
    with _locked():
        state = _refresh(_require_state())
        h = state.host(name)
        if h.running:
            return h
        _notify(progress, f"starting {name}")
        _ensure_nspawn_runtime()
        _ensure_bridge()
        _ensure_netns(h)
        _prepare_host(h, len(state.hosts), Path(state.base_dir))
        _launch(h)
        _save(state)
        try:
            _wait_ssh(h)
        except LabError:
            _stop(h, grace=2)
            _save(state)
            raise
        h.running = True
        _write_known_hosts(state.hosts)
        _save(state)
    _notify(progress, f"{name} ssh-ready")
    return h


def exec_in(
    name: str,
    argv: Sequence[str],
    *,
    input: str | None = None,
    timeout: float | None = 120,
    check: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run *argv* inside a running host (all its namespaces, its root, in its cgroup) as root.

    Uses ``nsenter`` into the container's init rather than ``ip netns exec``, which would only enter the
    network namespace and see the control machine's filesystem.
    """
    state = status()
    if state is None:
        raise LabError("no lab is up: run `lab up N` first")
    h = state.host(name)
    if not h.running or h.pid is None:
        raise LabError(f"lab host {name} is not running")
    init = _container_init_pid(h.pid)
    if init is None:
        raise LabError(f"lab host {name}: cannot find the container's init process (nspawn pid {h.pid})")
    env = {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "LANG": "C.UTF-8",
        "HOME": "/root",
        "TERM": "dumb",
    }
    cmd = [
        "/bin/sh",
        "-c",
        _ENTER_CGROUP_TRY,
        "sh",
        *_cgroup_procs_files(name),
        "nsenter",
        "-t",
        str(init),
        "-m",
        "-u",
        "-i",
        "-n",
        "-p",
        "-C",
        "-r",
        "-w",
        "--",
        *argv,
    ]
    try:
        cp = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        raise LabError(f"{name}: command timed out after {timeout} s: {' '.join(argv)}") from e
    if check and cp.returncode != 0:
        raise LabError(f"{name}: command failed ({cp.returncode}): {' '.join(argv)}: {cp.stderr.strip()}")
    return subprocess.CompletedProcess(list(argv), cp.returncode, cp.stdout, cp.stderr)


def host_memory_pss_kib(name: str) -> int:
    """Proportional set size of every process in a host's cgroup, in KiB (shared pages split fairly)."""
    total = 0
    for pid in _cgroup_pids(name):
        with contextlib.suppress(OSError, ValueError):
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
    return total
