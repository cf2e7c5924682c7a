"""The whole lab: ``up`` (N hosts, all or nothing) and ``down`` (every trace, whatever state it is in)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

from . import disks
from .cgroups import (
    _cgroup_dir,
    _ensure_nspawn_runtime,
    _kill_all_lab_cgroups,
    _mounts_under,
    _pid_alive,
    _remove_cgroups,
    _unmount_nspawn_runtime,
    _unmount_under,
    _wait_dead,
)
from .control import _locked, _run, check_prerequisites
from .hosts import _launch, _stop, _wait_ssh, _write_known_hosts
from .network import _check_address_space, _ensure_bridge, _ensure_netns, _links
from .paths import (
    _HOST_RE,
    _VETH_RE,
    BRIDGE,
    CGROUP_HIERARCHIES,
    CGROUP_NAME,
    GATEWAY,
    MAX_HOSTS,
    LabError,
    Progress,
    _notify,
    key_path,
    known_hosts_path,
    lab_dir,
    state_path,
)
from .rootfs import _prepare_host, ensure_base, ensure_key
from .state import LabHost, LabState, _load, _new_host, _refresh, _save


def up(n: int, progress: Progress = None, host_disks: dict[int, list[str]] | None = None) -> LabState:
    """Bring up *n* lab hosts ``kf1..kf<n>`` and wait until each accepts SSH with the lab key.

    Idempotent for the same *n* (missing or powered-off hosts are started, running ones kept); refuses a
    different *n* while a lab exists. On failure everything this call created is torn down.
    `host_disks`: host index -> paths of blank block devices the host gets (see `disks`).

    The hosts' files get a Debian install's modes whatever the caller's umask: under 077 a host's /
    (its overlay's upper dir) would be 0700 and no service user could even start. What must be
    private (the lab key, root's .ssh) is made so explicitly.
    """
    old = os.umask(0o022)
    try:
        return _up(n, progress, host_disks)
    finally:
        os.umask(old)


def _up(n: int, progress: Progress, host_disks: dict[int, list[str]] | None) -> LabState:
    host_disks = {i: sorted(set(d)) for i, d in (host_disks or {}).items() if d}
    if not isinstance(n, int) or not 1 <= n <= MAX_HOSTS:
        raise LabError(f"host count must be 1..{MAX_HOSTS}, got {n!r}")
    check_prerequisites()
    existing = _load()
    if existing and len(existing.hosts) != n:
        raise LabError(
            f"a lab with {len(existing.hosts)} hosts already exists in {lab_dir()}; "
            f"run `lab down` before `lab up {n}`"
        )
    if existing and any(sorted(h.disks) != host_disks.get(h.index, []) for h in existing.hosts):
        raise LabError(f"the lab in {lab_dir()} was made with other disks than this spec asks for (security.volumes); "
                       "run `lab down` first")
    if existing is None:
        # leftovers of a crashed lab in this lab dir would collide with the new one: clean them. Network
        # names are machine-wide, so kf* namespaces without any trace here belong to a lab elsewhere.
        left = [p.name for p in lab_dir().glob("kf*") if _HOST_RE.match(p.name)] if lab_dir().exists() else []
        if left:
            _notify(progress, f"cleaning leftovers of an earlier lab in {lab_dir()} ({', '.join(left)})")
            down(progress)
        else:
            foreign = _global_lab_traces()
            if foreign:
                raise LabError(
                    f"lab network objects already exist ({', '.join(foreign[:5])}) but {lab_dir()} "
                    "has no lab: another lab is up (different KAFKAFORM_LAB_DIR?) or a crashed one "
                    "left them; run `lab down` with that lab dir (down removes leftovers)"
                )
    _check_address_space()
    base = ensure_base(progress)
    ensure_key()
    t0 = time.monotonic()
    started: list[LabHost] = []
    try:
        with _locked():
            state = existing or LabState(
                lab_dir=str(lab_dir()),
                base_dir=str(base),
                bridge=BRIDGE,
                gateway=GATEWAY,
                key_path=str(key_path()),
                known_hosts_path=str(known_hosts_path()),
                hosts=[_new_host(i) for i in range(1, n + 1)],
            )
            for h in state.hosts:
                h.disks = host_disks.get(h.index, [])
            _refresh(state)
            _raise_inotify_limit(n, progress)
            _ensure_nspawn_runtime()
            _ensure_bridge()
            _save(state)  # record before creating anything, so a crash mid-way is cleanable by down()
            todo = [h for h in state.hosts if not h.running]
            _notify(progress, f"starting {len(todo)} of {n} hosts ({n - len(todo)} already running)")
            started.extend(todo)
            _start_many(state, todo, base, n, progress)
            _write_known_hosts(state.hosts)
            _save(state)
    except BaseException:
        with contextlib.suppress(Exception):
            if existing is None:
                _notify(progress, "lab up failed: tearing the lab down")
                down(progress)
            else:  # keep the hosts that were already running; power off only what this call started
                _notify(
                    progress, f"lab up failed: stopping {', '.join(h.name for h in started) or 'nothing'}"
                )
                with _locked():
                    for h in started:
                        _stop(h, grace=2)
                    _save(existing)
        raise
    _notify(progress, f"lab up: {n} hosts ssh-ready in {time.monotonic() - t0:.1f} s")
    return state


def _start_many(state: LabState, todo: list[LabHost], base: Path, n: int, progress: Progress) -> None:
    """Prepare and boot hosts; at most a few boot at once (boot is CPU-bound; each host's SSH timeout
    counts from its own launch, so 60 hosts on 2 cores do not time out waiting in line)."""
    booting = threading.Semaphore(max(4, 3 * (os.cpu_count() or 2)))

    def one(h: LabHost) -> None:
        with booting:
            _ensure_netns(h)
            _prepare_host(h, n, base)
            _launch(h)
            _save_quiet(state)
            _wait_ssh(h)
            h.running = True
        _notify(progress, f"{h.name} {h.address} ssh-ready")

    state_lock = threading.Lock()

    def _save_quiet(s: LabState) -> None:
        with state_lock:
            _save(s)

    with concurrent.futures.ThreadPoolExecutor(max_workers=min(len(todo), MAX_HOSTS) or 1) as ex:
        futs = {ex.submit(one, h): h for h in todo}
        errors = []
        for f in concurrent.futures.as_completed(futs):
            try:
                f.result()
            except Exception as e:  # collect: the first failure must not hide which hosts failed
                errors.append(e)
    _save(state)
    if errors:
        msgs = "\n".join(str(e) for e in errors)
        raise LabError(msgs if len(errors) == 1 else f"{len(errors)} hosts did not come up:\n{msgs}")


def down(progress: Progress = None, grace: float | None = None) -> None:
    """Remove every trace of the lab, whatever state it is in; safe to call twice. `grace`: how long
    each host gets to shut down cleanly before its processes are killed (tests, whose hosts go
    away with their data, need no clean shutdown).

    Works without (or with a partial) state.json: it scans for host dirs, netns ``kf*``, veths ``kf*-br``,
    nspawn processes under the lab dir, mounts under the lab dir, ``kflab`` cgroups and the bridge.
    Keeps only the lab SSH key (and the cached base).
    """
    check_prerequisites()
    t0 = time.monotonic()
    d = lab_dir()
    from reconciler.observe.openssh import close_masters

    try:  # kafkaform's SSH master connections to the hosts about to go (this KAFKAFORM_HOME's)
        close_masters()
    except (OSError, subprocess.SubprocessError):
        pass
    with _locked():
        try:
            state = _load()
        except LabError:
            state = None
        hosts: dict[str, LabHost] = {h.name: h for h in (state.hosts if state else [])}
        for p in d.glob("kf*") if d.exists() else []:
            m = _HOST_RE.match(p.name)
            if m and p.name not in hosts:
                h = _new_host(int(m.group(1))) if int(m.group(1)) <= MAX_HOSTS else None
                if h is not None:
                    hosts[h.name] = h
        for name in [ns.split()[0] for ns in _run(["ip", "netns", "list"]).stdout.splitlines() if ns.strip()]:
            m = _HOST_RE.match(name)
            if m and name not in hosts and int(m.group(1)) <= MAX_HOSTS:
                hosts[name] = _new_host(int(m.group(1)))
        for h in hosts.values():  # pid from the host's own pid file when state.json lacks it
            if not h.pid:
                with contextlib.suppress(OSError, ValueError):
                    h.pid = int((Path(h.dir) / "nspawn.pid").read_text())
        # nspawn processes of this lab that nobody recorded
        stray = _stray_nspawns(d, hosts)
        _notify(
            progress,
            f"stopping {sum(1 for h in hosts.values() if _pid_alive(h.pid))} hosts"
            + (f" and {len(stray)} unrecorded nspawn processes" if stray else ""),
        )
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, min(len(hosts), MAX_HOSTS))) as ex:
            list(ex.map(lambda h: _stop(h) if grace is None else _stop(h, grace=grace), hosts.values()))
        for pid in stray:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_dead(pid, 5)
        _kill_all_lab_cgroups()
        _unmount_under(d)
        disks.detach_all(d)
        links = {link["ifname"] for link in _links()}
        for name in sorted(links):
            if _VETH_RE.match(name):  # the host side first: veths can outlive `ip netns del`
                _run(["ip", "link", "del", name], check=False)
        for ns in _run(["ip", "netns", "list"]).stdout.splitlines():
            name = ns.split()[0] if ns.strip() else ""
            if _HOST_RE.match(name):
                _run(["ip", "netns", "del", name], check=False)
        if BRIDGE in links:
            _run(["ip", "link", "del", BRIDGE], check=False)
        _remove_cgroups()
        _unmount_nspawn_runtime()
        _restore_inotify_limit()
        if _mounts_under(d):
            raise LabError(f"mounts remain under {d} ({', '.join(_mounts_under(d))}); not deleting host dirs")
        left = disks.attached(d)
        if left:
            raise LabError(f"loop devices remain attached to lab disks ({', '.join(left)}); not deleting host dirs")
        for p in d.glob("kf*") if d.exists() else []:
            if _HOST_RE.match(p.name):
                shutil.rmtree(p, ignore_errors=True)
        for f in (state_path(), known_hosts_path(), state_path().with_suffix(".tmp")):
            f.unlink(missing_ok=True)
    _notify(progress, f"lab down in {time.monotonic() - t0:.1f} s")


def _global_lab_traces() -> list[str]:
    """Machine-wide objects a lab creates (names are not per lab dir)."""
    out = [
        f"netns {ns.split()[0]}"
        for ns in _run(["ip", "netns", "list"]).stdout.splitlines()
        if ns.strip() and _HOST_RE.match(ns.split()[0])
    ]
    out += [
        f"link {link['ifname']}"
        for link in _links()
        if link["ifname"] == BRIDGE or _VETH_RE.match(link["ifname"])
    ]
    out += [f"cgroup {hier}/{CGROUP_NAME}" for hier in CGROUP_HIERARCHIES if _cgroup_dir(hier).is_dir()]
    return out


def _raise_inotify_limit(n: int, progress: Progress) -> None:
    """Every booted host's systemd/journald/dbus/logind takes inotify instances from root's shared
    limit (default 128): 30 hosts exhaust it and late hosts fail to boot with EMFILE."""
    p = Path("/proc/sys/fs/inotify/max_user_instances")
    with contextlib.suppress(OSError, ValueError):
        cur = int(p.read_text())
        want = 64 + 16 * n  # measured: 8 instances per idle host; headroom for services
        if cur < want:
            orig = lab_dir() / ".inotify_max_user_instances.orig"
            if not orig.exists():
                orig.write_text(f"{cur}\n")
            p.write_text(str(want))
            _notify(progress, f"raised fs.inotify.max_user_instances {cur} -> {want} for {n} hosts")


def _restore_inotify_limit() -> None:
    orig = lab_dir() / ".inotify_max_user_instances.orig"
    with contextlib.suppress(OSError, ValueError):
        Path("/proc/sys/fs/inotify/max_user_instances").write_text(str(int(orig.read_text())))
        orig.unlink()


def _stray_nspawns(d: Path, known: dict[str, LabHost]) -> list[int]:
    recorded = {h.pid for h in known.values() if h.pid}
    out = []
    prefix = (str(d).rstrip("/") + "/").encode()
    for p in Path("/proc").iterdir():
        if not p.name.isdigit() or int(p.name) in recorded:
            continue
        with contextlib.suppress(OSError):
            argv = (p / "cmdline").read_bytes().split(b"\0")
            if argv and argv[0].endswith(b"systemd-nspawn") and any(a.startswith(prefix) for a in argv):
                out.append(int(p.name))
    return out
