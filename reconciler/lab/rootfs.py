"""Disks of lab hosts: the cached debootstrap base rootfs (overlay lower dir, shared read-only), the
lab SSH key it authorizes, and each host's overlay upper dir with its per-host identity files."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from .cgroups import _is_mountpoint, _mounts_under
from .control import _run, check_prerequisites
from .paths import GATEWAY, LabError, Progress, _notify, base_dir, host_address, host_name, key_path, lab_dir
from .state import LabHost

BASE_SUITE = "bookworm"
BASE_RECIPE_VERSION = 2  # bump when the base recipe changes: a cached base with another version is rebuilt
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
    "cryptsetup-bin",  # security.volumes: LUKS volumes (hosts have no network to apt-get it later)
)
BASE_MARKER = ".kafkaform-lab-base.json"  # written last inside the tmp dir, before the rename
DEFAULT_MIRROR = "http://deb.debian.org/debian"

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
