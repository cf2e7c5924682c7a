"""Local lab hosts: real systemd machines as ``systemd-nspawn --boot`` containers on this machine.

Port of the measured recipe in ``/work/shared/lab-reference/nspawn-lab.sh`` with real state, errors
and cleanup. Each lab host is a Debian 12 rootfs booted by systemd-nspawn:

* one cached base rootfs (debootstrap minbase) shared read-only by all hosts as the overlayfs lower dir;
  each host's overlay *upper* dir is its disk (it survives ``stop_host``/``start_host``);
* one network namespace per host with a veth whose host side sits on the bridge ``kflab0``
  (10.213.0.1/24); host *i* is ``kf<i>`` at ``10.213.0.(10+i)``;
* one cgroup per host (``kflab/<name>`` in the ``name=systemd`` and ``unified`` hierarchies) so that
  ``down`` can kill everything a host runs even when its shutdown hangs.

Why these choices (see the reference README): the control machine has no systemd/D-Bus, so nspawn runs
with ``--register=no --keep-unit``; without a per-host cgroup all containers would share the caller's;
``down`` must never rely on a clean shutdown (a broker that lost ZooKeeper hangs its stop for minutes).

The module only exposes functions; the CLI is wired elsewhere. Long operations take an optional
``progress`` callback receiving one human-readable line per step.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
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

SSH_TIMEOUT_S = 60.0
STOP_GRACE_S = 10.0
BASE_SUITE = "bookworm"
BASE_RECIPE_VERSION = 1  # bump when the base recipe changes: a cached base with another version is rebuilt
BASE_PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "openjdk-17-jre-headless",
    "iproute2",
    "procps",
    "ca-certificates",
    "sudo",
    "tar",
    "gzip",
)
BASE_MARKER = ".kafkaform-lab-base.json"  # written last inside the tmp dir, before the rename
DEFAULT_MIRROR = "http://deb.debian.org/debian"

_HOST_RE = re.compile(r"^kf([1-9][0-9]*)$")
_VETH_RE = re.compile(r"^kf[1-9][0-9]*-br$")

# Popen objects of nspawn processes started by this Python process: polled so they do not linger as
# zombies (a zombie still answers kill(pid, 0), which would look like a running host).
_children: dict[int, subprocess.Popen[bytes]] = {}
_children_lock = threading.Lock()

SSHKEYS_UNIT = """\
[Unit]
Description=Per-host SSH host keys (kafkaform lab)
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
WantedBy=multi-user.target
"""


class LabError(Exception):
    """A lab operation failed; the message says what and, where possible, how to fix it."""


# ----------------------------------------------------------------------------------------------- state


@dataclass
class LabHost:
    """One lab host. ``pid`` is the systemd-nspawn process (None while the host is powered off)."""

    name: str
    address: str
    index: int
    pid: int | None
    dir: str
    root: str
    upper: str
    work: str
    log: str
    running: bool = False  # live, filled by status()/up(); not trusted from the file


@dataclass
class LabState:
    """What ``<lab_dir>/state.json`` records about the lab."""

    lab_dir: str
    base_dir: str
    bridge: str
    gateway: str
    key_path: str
    known_hosts_path: str
    hosts: list[LabHost] = field(default_factory=list)

    def host(self, name: str) -> LabHost:
        for h in self.hosts:
            if h.name == name:
                return h
        raise LabError(
            f"no lab host named {name!r} (hosts: {', '.join(h.name for h in self.hosts) or 'none'})"
        )

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> LabState:
        raw = json.loads(text)
        hosts = [LabHost(**h) for h in raw.pop("hosts", [])]
        return cls(hosts=hosts, **raw)


# ----------------------------------------------------------------------------------------------- paths


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


def _new_host(i: int) -> LabHost:
    d = lab_dir() / host_name(i)
    return LabHost(
        name=host_name(i),
        address=host_address(i),
        index=i,
        pid=None,
        dir=str(d),
        root=str(d / "root"),
        upper=str(d / "upper"),
        work=str(d / "work"),
        log=str(d / "nspawn.log"),
    )


def _notify(progress: Progress, msg: str) -> None:
    if progress is not None:
        progress(msg)


# ----------------------------------------------------------------------------------------------- helpers


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


def _is_nspawn_of(pid: int, h: LabHost) -> bool:
    """Guard against pid reuse: only signal a recorded pid if it is still this host's nspawn."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"systemd-nspawn") and f"--machine={h.name}".encode() in argv


def _cgroup_dir(hierarchy: str, name: str | None = None) -> Path:
    p = Path("/sys/fs/cgroup") / hierarchy / CGROUP_NAME
    return p / name if name else p


def _cgroup_pids(name: str) -> set[int]:
    """Every process in a host's cgroup subtree (both hierarchies)."""
    pids: set[int] = set()
    for hier in CGROUP_HIERARCHIES:
        root = _cgroup_dir(hier, name)
        if not root.is_dir():
            continue
        for procs in root.rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(x) for x in procs.read_text().split())
    return pids


def _kill_cgroup(name: str) -> int:
    n = 0
    for pid in _cgroup_pids(name):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
            n += 1
    return n


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


# ----------------------------------------------------------------------------------------------- key


def ensure_key() -> Path:
    """Create the lab's SSH key pair once (``<lab_dir>/lab_key`` + ``.pub``); return the private key path."""
    priv = key_path()
    pub = priv.with_name(priv.name + ".pub")
    if priv.exists() and pub.exists():
        return priv
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    k = Ed25519PrivateKey.generate()
    priv.parent.mkdir(parents=True, exist_ok=True)
    tmp = priv.with_name(priv.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            k.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
            )
        )
    pub.write_bytes(
        k.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        + b" kafkaform-lab\n"
    )
    os.replace(tmp, priv)
    return priv


def _public_key() -> str:
    return key_path().with_name("lab_key.pub").read_text().strip()


# ----------------------------------------------------------------------------------------------- base


def apt_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 ``URIs:`` or a ``deb`` line), else deb.debian.org."""
    candidates: list[Path] = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for f in candidates:
        with contextlib.suppress(OSError):
            for line in f.read_text().splitlines():
                if line.startswith("URIs:") and "security" not in line:
                    return line.split()[1]
    for f in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list"))]:
        with contextlib.suppress(OSError):
            for line in f.read_text().splitlines():
                parts = line.split()
                if parts[:1] == ["deb"]:
                    uri = next((p for p in parts[1:] if "://" in p), None)
                    if uri and "security" not in uri:
                        return uri
    return DEFAULT_MIRROR


def _base_ok(d: Path) -> bool:
    try:
        marker = json.loads((d / BASE_MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("recipe_version") == BASE_RECIPE_VERSION


def ensure_base(progress: Progress = None, *, rebuild: bool = False) -> Path:
    """Return the cached base rootfs, building it first if it is missing, half-built or outdated.

    Built into ``lab-base.tmp`` and renamed into place only when complete (the marker file is written
    last), so an interrupted build is never mistaken for a base. Takes about 1.5 min.
    """
    base = base_dir()
    if not rebuild and _base_ok(base):
        return base
    check_prerequisites(need_debootstrap=True)
    if _mounts_under(lab_dir()) and base.exists():
        raise LabError(
            f"the base {base} must be rebuilt but lab hosts are mounted on it: run `lab down` first"
        )
    ensure_key()
    tmp = base.with_name(base.name + ".tmp")
    if tmp.exists():
        _notify(progress, f"removing half-built base {tmp}")
        shutil.rmtree(tmp)
    tmp.parent.mkdir(parents=True, exist_ok=True)
    mirror = apt_mirror()
    t0 = time.monotonic()
    _notify(progress, f"building base rootfs with debootstrap ({BASE_SUITE}, mirror {mirror}); ~1.5 min")
    cp = subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(BASE_PACKAGES)}",
            BASE_SUITE,
            str(tmp),
            mirror,
        ],
        capture_output=True,
        text=True,
    )
    if cp.returncode != 0:
        tail = "\n".join((cp.stdout + cp.stderr).strip().splitlines()[-15:])
        raise LabError(
            f"debootstrap failed ({cp.returncode}) with mirror {mirror}; the half-built base stays "
            f"in {tmp} for inspection and is removed by the next build:\n{tail}"
        )
    _notify(progress, "configuring base (per-host identity, ssh key unit, apt clean)")
    # Per-host identity: no hostname, no ssh host keys, an empty machine-id (each host gets its own).
    for k in (tmp / "etc/ssh").glob("ssh_host_*"):
        k.unlink()
    (tmp / "etc/hostname").unlink(missing_ok=True)
    (tmp / "etc/machine-id").write_text("")
    (tmp / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    unit = tmp / "etc/systemd/system/lab-sshkeys.service"
    unit.write_text(SSHKEYS_UNIT)
    wants = tmp / "etc/systemd/system/multi-user.target.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / "lab-sshkeys.service"
    link.unlink(missing_ok=True)
    link.symlink_to("/etc/systemd/system/lab-sshkeys.service")
    # Root login with a key only (Debian's default `prohibit-password`, made explicit).
    sshd_d = tmp / "etc/ssh/sshd_config.d"
    sshd_d.mkdir(parents=True, exist_ok=True)
    (sshd_d / "kafkaform-lab.conf").write_text("PermitRootLogin prohibit-password\nUseDNS no\n")
    ssh_dir = tmp / "root/.ssh"
    ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(ssh_dir, 0o700)
    ak = ssh_dir / "authorized_keys"
    ak.write_text(_public_key() + "\n")
    os.chmod(ak, 0o600)
    subprocess.run(["chroot", str(tmp), "apt-get", "clean"], capture_output=True)
    lists = tmp / "var/lib/apt/lists"
    for p in lists.glob("*"):
        if p.is_file():
            p.unlink()
    seconds = round(time.monotonic() - t0, 1)
    (tmp / BASE_MARKER).write_text(
        json.dumps(
            {
                "recipe_version": BASE_RECIPE_VERSION,
                "suite": BASE_SUITE,
                "mirror": mirror,
                "packages": list(BASE_PACKAGES),
                "authorized_key": _public_key(),
                "build_seconds": seconds,
                "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            },
            indent=2,
        )
        + "\n"
    )
    if base.exists():
        old = base.with_name(base.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(base, old)
        shutil.rmtree(old, ignore_errors=True)
    os.rename(tmp, base)
    _notify(progress, f"base rootfs ready in {seconds} s: {base}")
    return base


# ----------------------------------------------------------------------------------------------- network


def _links() -> list[dict]:
    return json.loads(_run(["ip", "-j", "link", "show"]).stdout or "[]")


def _check_address_space() -> None:
    """Refuse when 10.213.0.0/24 is already used by something that is not the lab's bridge."""
    addrs = json.loads(_run(["ip", "-j", "-4", "addr", "show"]).stdout or "[]")
    for link in addrs:
        for a in link.get("addr_info", []):
            if a.get("local", "").startswith(NET_PREFIX + ".") and link["ifname"] != BRIDGE:
                raise LabError(
                    f"address {a['local']} is already in use on interface {link['ifname']}: the lab "
                    f"needs {NET_PREFIX}.0/{PREFIX_LEN} for itself"
                )
            if link["ifname"] == BRIDGE and a.get("local") not in (None, GATEWAY):
                raise LabError(
                    f"bridge {BRIDGE} exists with unexpected address {a['local']} (expected {GATEWAY}); "
                    "run `lab down` or remove it"
                )
    routes = json.loads(_run(["ip", "-j", "-4", "route", "show"]).stdout or "[]")
    for r in routes:
        dst = r.get("dst", "")
        if dst.startswith(NET_PREFIX + ".") and r.get("dev") != BRIDGE:
            raise LabError(
                f"route {dst} via {r.get('dev')} overlaps the lab network {NET_PREFIX}.0/{PREFIX_LEN}"
            )


def _ensure_bridge() -> None:
    names = {link["ifname"] for link in _links()}
    if BRIDGE not in names:
        _run(["ip", "link", "add", BRIDGE, "type", "bridge"])
        _run(["ip", "addr", "add", f"{GATEWAY}/{PREFIX_LEN}", "dev", BRIDGE])
    _run(["ip", "link", "set", BRIDGE, "up"])


def _ensure_netns(h: LabHost) -> None:
    """Network namespace ``kf<i>`` with ``eth0`` = address; host side ``kf<i>-br`` on the bridge."""
    if not Path(f"/run/netns/{h.name}").exists():
        _run(["ip", "netns", "add", h.name])
    names = {link["ifname"] for link in _links()}
    veth = f"{h.name}-br"
    if veth not in names:
        # a namespace left without its eth0 (half-made lab) is rebuilt by recreating the pair
        cp = _run(["ip", "-n", h.name, "link", "show", "eth0"], check=False)
        if cp.returncode == 0:
            _run(["ip", "-n", h.name, "link", "del", "eth0"])
        _run(["ip", "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", h.name])
    _run(["ip", "link", "set", veth, "master", BRIDGE, "up"])
    addr = _run(["ip", "-n", h.name, "-j", "-4", "addr", "show", "dev", "eth0"]).stdout
    if f'"{h.address}"' not in addr:
        _run(["ip", "-n", h.name, "addr", "add", f"{h.address}/{PREFIX_LEN}", "dev", "eth0"])
    _run(["ip", "-n", h.name, "link", "set", "eth0", "up"])
    _run(["ip", "-n", h.name, "link", "set", "lo", "up"])
    # No default route on purpose: hosts have no outbound network anyway, and without one a stray packet
    # to any non-lab address fails at once ("network unreachable") instead of leaving via the control
    # machine. The connected /24 is all the lab needs (hosts <-> hosts, hosts <-> control machine).
    _run(["ip", "-n", h.name, "route", "del", "default"], check=False)


def _ensure_nspawn_runtime() -> None:
    """nspawn needs a tmpfs-like /run/systemd/nspawn (propagation dir); mount one only when missing."""
    if _is_mountpoint(NSPAWN_RUNTIME):
        return
    run_fs = next((t for mp, t, _ in reversed(_mounts()) if mp == "/run"), None)
    if run_fs == "tmpfs":
        return
    NSPAWN_RUNTIME.mkdir(parents=True, exist_ok=True)
    _run(["mount", "-t", "tmpfs", "-o", "mode=755", NSPAWN_TMPFS_SOURCE, str(NSPAWN_RUNTIME)])


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


# ----------------------------------------------------------------------------------------------- hosts


def _hosts_file(n: int) -> str:
    lines = ["127.0.0.1 localhost", "::1 localhost ip6-localhost ip6-loopback", f"{GATEWAY} kflab-control"]
    lines += [f"{host_address(j)} {host_name(j)}" for j in range(1, n + 1)]
    return "\n".join(lines) + "\n"


def _mkdir_like_lower(upper: Path, lower: Path, rel: str) -> Path:
    """Create ``upper/rel`` with the lower dir's mode and owner (overlay shows the upper dir's attributes,
    and sshd's StrictModes rejects a /root or /root/.ssh with loose permissions)."""
    cur_u, cur_l = upper, lower
    for part in Path(rel).parts:
        cur_u, cur_l = cur_u / part, cur_l / part
        if not cur_u.exists():
            cur_u.mkdir()
            with contextlib.suppress(OSError):
                st = cur_l.stat()
                os.chown(cur_u, st.st_uid, st.st_gid)
                os.chmod(cur_u, st.st_mode & 0o7777)
    return cur_u


def _prepare_host(h: LabHost, n: int, base: Path) -> None:
    """Create a host's dirs and per-host files in its overlay upper dir (idempotent), then mount it."""
    upper, work, root = Path(h.upper), Path(h.work), Path(h.root)
    for d in (Path(h.dir), upper, work, root):
        d.mkdir(parents=True, exist_ok=True)
    etc = _mkdir_like_lower(upper, base, "etc")
    (etc / "hostname").write_text(h.name + "\n")
    (etc / "hosts").write_text(_hosts_file(n))
    # nspawn would copy the control machine's resolv.conf: lookups of names missing from /etc/hosts (and
    # every IPv6 lookup of a lab name) would then send DNS to a server outside the lab and stall ~10 s.
    # A loopback resolver with no server fails instantly; lab names come from /etc/hosts.
    (etc / "resolv.conf").write_text(
        "# kafkaform lab: no DNS (no outbound network); names are in /etc/hosts\n"
        "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n"
    )
    mid = etc / "machine-id"
    if not mid.exists() or not mid.read_text().strip():
        mid.write_text(uuid.uuid4().hex + "\n")  # stable per host: survives power-off (it is on its disk)
    pub = _public_key()
    base_keys = base / "root/.ssh/authorized_keys"
    if pub not in (base_keys.read_text() if base_keys.exists() else ""):
        # cached base from an older lab key: authorize the current key on this host only
        ssh_dir = _mkdir_like_lower(upper, base, "root/.ssh")
        os.chmod(ssh_dir, 0o700)
        ak = ssh_dir / "authorized_keys"
        ak.write_text(pub + "\n")
        os.chmod(ak, 0o600)
    if not _is_mountpoint(root):
        _run(
            [
                "mount",
                "-t",
                "overlay",
                "overlay",
                "-o",
                f"lowerdir={base},upperdir={upper},workdir={work}",
                str(root),
            ]
        )


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


def _save(state: LabState) -> None:
    tmp = state_path().with_suffix(".tmp")
    tmp.write_text(state.to_json())
    os.replace(tmp, state_path())


def _load() -> LabState | None:
    try:
        return LabState.from_json(state_path().read_text())
    except FileNotFoundError:
        return None
    except (ValueError, TypeError) as e:
        raise LabError(f"{state_path()} is unreadable ({e}); run `lab down` to clean up") from e


def _refresh(state: LabState) -> LabState:
    for h in state.hosts:
        h.running = bool(h.pid) and _pid_alive(h.pid) and h.pid is not None and _is_nspawn_of(h.pid, h)
    return state


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


# ----------------------------------------------------------------------------------------------- public API


def status() -> LabState | None:
    """The recorded lab with live ``running`` flags, or None when no lab state exists."""
    state = _load()
    return _refresh(state) if state else None


def up(n: int, progress: Progress = None) -> LabState:
    """Bring up *n* lab hosts ``kf1..kf<n>`` and wait until each accepts SSH with the lab key.

    Idempotent for the same *n* (missing or powered-off hosts are started, running ones kept); refuses a
    different *n* while a lab exists. On failure everything this call created is torn down.
    """
    if not isinstance(n, int) or not 1 <= n <= MAX_HOSTS:
        raise LabError(f"host count must be 1..{MAX_HOSTS}, got {n!r}")
    check_prerequisites()
    existing = _load()
    if existing and len(existing.hosts) != n:
        raise LabError(
            f"a lab with {len(existing.hosts)} hosts already exists in {lab_dir()}; "
            f"run `lab down` before `lab up {n}`"
        )
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


def down(progress: Progress = None) -> None:
    """Remove every trace of the lab, whatever state it is in; safe to call twice.

    Works without (or with a partial) state.json: it scans for host dirs, netns ``kf*``, veths ``kf*-br``,
    nspawn processes under the lab dir, mounts under the lab dir, ``kflab`` cgroups and the bridge.
    Keeps only the lab SSH key (and the cached base).
    """
    check_prerequisites()
    t0 = time.monotonic()
    d = lab_dir()
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
            list(ex.map(_stop, hosts.values()))
        for pid in stray:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            _wait_dead(pid, 5)
        _kill_all_lab_cgroups()
        _unmount_under(d)
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


def _kill_all_lab_cgroups() -> None:
    for _ in range(30):
        pids: set[int] = set()
        for hier in CGROUP_HIERARCHIES:
            root = _cgroup_dir(hier)
            if root.is_dir():
                for procs in root.rglob("cgroup.procs"):
                    with contextlib.suppress(OSError, ValueError):
                        pids.update(int(x) for x in procs.read_text().split())
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
            dirs = sorted(
                (p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True
            )
            for p in [*dirs, root]:
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


def _unmount_under(d: Path) -> None:
    for _ in range(3):
        mps = _mounts_under(d)
        if not mps:
            return
        for mp in sorted(set(mps), key=len, reverse=True):
            cp = _run(["umount", mp], check=False)
            if cp.returncode != 0 and _is_mountpoint(mp):
                _run(["umount", "-l", mp], check=False)


def _unmount_nspawn_runtime() -> None:
    for mp, fstype, source in reversed(_mounts()):
        if mp == str(NSPAWN_RUNTIME) and fstype == "tmpfs" and source == NSPAWN_TMPFS_SOURCE:
            _run(["umount", str(NSPAWN_RUNTIME)], check=False)


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


def _require_state() -> LabState:
    state = _load()
    if state is None:
        raise LabError(f"no lab is up (no {state_path()}): run `lab up N` first")
    return state


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


__all__ = [
    "BRIDGE",
    "GATEWAY",
    "MAX_HOSTS",
    "LabError",
    "LabHost",
    "LabState",
    "base_dir",
    "cache_dir",
    "check_prerequisites",
    "down",
    "ensure_base",
    "ensure_key",
    "exec_in",
    "host_address",
    "host_memory_pss_kib",
    "host_name",
    "key_path",
    "known_hosts_path",
    "lab_dir",
    "start_host",
    "status",
    "stop_host",
    "up",
]
