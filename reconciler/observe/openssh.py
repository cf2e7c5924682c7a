"""OpenSSH's client as observe's transport: one ControlPersist master connection per host, kept in
a directory only this user can enter, so plan after plan (and apply after plan) skips the SSH
handshake, as Ansible does with its own masters. Each command is one `ssh` client process over the
master: no Python crypto, no GIL, all hosts in parallel.

Host keys are checked by OpenSSH itself with the spec's known_hosts file and mode (strict =
StrictHostKeyChecking=yes, accept-new, ignore = no checking and no file). The user's ssh_config
is not read (-F /dev/null), so the spec alone decides how hosts are reached.
"""

from __future__ import annotations

import hashlib
import math
import os
import re
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from reconciler.observe.ssh import CommandResult, CommandTimeout, HostUnreachable, SshSettings, _fmt_seconds

CONTROL_PERSIST_S = 60  # an idle master ends after this
_SOCKET_MAX = 80  # sun_path is 108 bytes; OpenSSH binds a name with a random suffix first


def control_dir_path(kf_home: Path | None = None) -> Path:
    """Where the master sockets of a kafkaform home (KAFKAFORM_HOME's by default) go: under it, or
    /tmp when that path is too long."""
    from reconciler.apply.state import home

    d = (kf_home or home()) / "ssh"
    if len(str(d)) + 25 > _SOCKET_MAX:
        digest = hashlib.sha256(str(d).encode()).hexdigest()[:12]
        d = Path(tempfile.gettempdir()) / f"kafkaform-ssh-{os.getuid()}-{digest}"
    return d


def control_dir() -> Path:
    """The 0700 dir of the master sockets (made on first use)."""
    from reconciler.apply.state import private_dir

    return private_dir(control_dir_path())


def master_listening(sock_path: Path) -> bool:
    """A master accepts on its socket. A connect, not `ssh -O check`: that would be one more
    process per host on every observe, which is CPU-bound. A socket left by a killed master
    refuses the connect."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        try:
            sock.connect(str(sock_path))
        except OSError:
            return False
    return True


def control_path(host: str, s: SshSettings) -> Path:
    """The master socket of user@host:port (a name of our own: a stale one can be removed)."""
    return control_dir() / hashlib.sha256(f"{s.user}@{host}:{s.port}".encode()).hexdigest()[:24]


def _options(host: str, s: SshSettings) -> list[str]:
    if s.known_hosts == "ignore":
        keys = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"]
    else:
        mode = "yes" if s.known_hosts == "strict" else "accept-new"
        keys = ["-o", f"StrictHostKeyChecking={mode}", "-o", f"UserKnownHostsFile={s.known_hosts_path()}"]
    ident = ["-i", s.key_file, "-o", "IdentitiesOnly=yes"] if s.key_file else []
    return ["ssh", "-F", "/dev/null", "-o", "BatchMode=yes", "-o", "LogLevel=ERROR",
            "-o", f"ConnectTimeout={max(1, math.ceil(s.connect_timeout))}",
            "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3",
            "-o", "GlobalKnownHostsFile=/dev/null", "-o", f"ControlPath={control_path(host, s)}",
            "-p", str(s.port), "-l", s.user, *keys, *ident]


_CLIENT_ERRORS = re.compile(r"^(ssh: |Host key verification failed|Permission denied|Connection (timed out|closed|"
                            r"reset)|kex_exchange_identification|banner exchange|Warning: Identity file)", re.M)


def reason(stderr: str, s: SshSettings) -> str:
    """OpenSSH's stderr as the reason an operator can act on (the paramiko transport's words)."""
    kh = "ignored" if s.known_hosts == "ignore" else s.known_hosts_path()
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or "Host key for" in stderr:
        return f"host key mismatch (known_hosts: {kh})"
    if "Host key verification failed" in stderr or "No ED25519 host key is known" in stderr:
        return f"unknown host key (known_hosts: {kh})"
    if "Permission denied" in stderr:
        return f"authentication failed for {s.user}"
    if "Connection refused" in stderr:
        return f"connection refused on port {s.port}"
    if "timed out" in stderr or "Operation timed out" in stderr:
        return f"timed out after {_fmt_seconds(s.connect_timeout)}"
    m = re.search(r"Could not resolve hostname [^:]+: (.+)", stderr)
    if m:
        return f"cannot resolve host name ({m.group(1).strip()})"
    last = next((x.strip() for x in reversed(stderr.splitlines()) if x.strip()), "no reason given")
    return f"cannot connect on port {s.port}: {last.removeprefix('ssh: ')}"


class OpenSshTransport:
    """A `Transport` over this user's OpenSSH master connection to one host."""

    def __init__(self, host: str, settings: SshSettings) -> None:
        self.host = host
        self._settings = settings
        self._base = _options(host, settings)

    @classmethod
    def connect(cls, host: str, settings: SshSettings) -> OpenSshTransport:
        """Reuse the host's master connection, or open one; `HostUnreachable` says why not."""
        if settings.key_file and not os.access(settings.key_file, os.R_OK):
            why = "no such file" if not os.path.exists(settings.key_file) else "permission denied"
            raise HostUnreachable(host, f"cannot read key file {settings.key_file}: {why}")
        t = cls(host, settings)
        if not t._master_alive():
            t._start_master()
        return t

    def _master_alive(self) -> bool:
        return master_listening(control_path(self.host, self._settings))

    def _start_master(self) -> None:
        timeout = self._settings.connect_timeout + 10
        # A socket without a live master (it was killed) would make ssh fall back to a plain
        # connection that -f -N keeps forever: remove it first.
        control_path(self.host, self._settings).unlink(missing_ok=True)
        # stderr to a file, not a pipe: the backgrounded master keeps it open for its whole life
        with tempfile.TemporaryFile() as err:
            try:
                p = subprocess.run([*self._base, "-f", "-N", "-o", "ControlMaster=yes",
                                    "-o", f"ControlPersist={CONTROL_PERSIST_S}s", "--", self.host],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=timeout)
            except subprocess.TimeoutExpired:
                raise HostUnreachable(self.host, f"timed out after {_fmt_seconds(self._settings.connect_timeout)}"
                                      ) from None
            err.seek(0)
            text = err.read().decode("utf-8", "replace")
        if p.returncode != 0 and not self._master_alive():  # (a parallel kafkaform may have won the race)
            raise HostUnreachable(self.host, reason(text, self._settings))

    def run(self, cmd: str, timeout: float) -> CommandResult:
        """Run `cmd` through the host's login shell, over the master."""
        try:
            p = subprocess.run([*self._base, "-o", "ControlMaster=no", "--", self.host, cmd],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise CommandTimeout(self.host, f"command timed out after {_fmt_seconds(timeout)}") from None
        out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
        if p.returncode == 255 and _CLIENT_ERRORS.search(err):
            raise HostUnreachable(self.host, reason(err, self._settings))
        return CommandResult(p.returncode, out, err)

    def close(self) -> None:
        """Nothing to do: the master stays for the next command (it ends after idling)."""


def close_masters(kf_home: Path | None = None, remove_dir: bool = False) -> int:
    """End the master connections of a kafkaform home (e.g. when the lab's hosts go away); the
    count ended. `remove_dir`: their dir goes too (a home that is going away, whose socket dir may
    be in /tmp)."""
    d = control_dir_path(kf_home)
    n = 0
    for sock in d.iterdir() if d.is_dir() else ():
        if sock.is_socket():
            p = subprocess.run(["ssh", "-F", "/dev/null", "-o", f"ControlPath={sock}", "-O", "exit", "kafkaform"],
                               stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
            n += p.returncode == 0
            sock.unlink(missing_ok=True)
    if remove_dir:
        shutil.rmtree(d, ignore_errors=True)
    return n
