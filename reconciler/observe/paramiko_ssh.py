"""The paramiko transport (where OpenSSH's client is not installed, or KAFKAFORM_SSH=paramiko)."""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time

import paramiko

from reconciler.observe.ssh import CommandResult, CommandTimeout, HostUnreachable, SshSettings, _fmt_seconds

# paramiko logs every failed handshake with a traceback (to stderr via logging's last resort when the
# application configured nothing); the reason is already in HostUnreachable, so keep it quiet.
logging.getLogger("paramiko").addHandler(logging.NullHandler())


class _UnknownHostKey(paramiko.SSHException):
    pass


class _RejectPolicy(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise _UnknownHostKey(hostname)


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """OpenSSH `StrictHostKeyChecking=accept-new`: record unknown keys, still refuse changed ones.

    paramiko's AutoAddPolicy rewrites the whole file from each client, which loses entries when many
    hosts connect in parallel; here every new key is appended under one process-wide lock.
    """

    _lock = threading.Lock()

    def __init__(self, path: str) -> None:
        self.path = path

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        with self._lock:
            os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
            with open(self.path, "a", encoding="ascii") as fh:
                fh.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


class _IgnorePolicy(paramiko.MissingHostKeyPolicy):
    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        return None


class ParamikoTransport:
    """A `Transport` over one paramiko SSH connection."""

    def __init__(self, host: str, client: paramiko.SSHClient) -> None:
        self.host = host
        self._client = client

    @classmethod
    def connect(cls, host: str, settings: SshSettings) -> ParamikoTransport:
        """Connect and authenticate, or raise `HostUnreachable` with a specific reason."""
        client = paramiko.SSHClient()
        kh_path = settings.known_hosts_path()
        if settings.known_hosts != "ignore" and os.path.exists(kh_path):
            try:
                client.load_host_keys(kh_path)
            except (OSError, paramiko.SSHException) as e:
                client.close()
                raise HostUnreachable(host, f"cannot read known_hosts {kh_path}: {e}") from e
        policy: paramiko.MissingHostKeyPolicy = {
            "strict": _RejectPolicy,
            "accept-new": lambda: _AcceptNewPolicy(kh_path),
            "ignore": _IgnorePolicy,
        }[settings.known_hosts]()
        client.set_missing_host_key_policy(policy)
        t = settings.connect_timeout
        started = time.monotonic()
        try:
            client.connect(
                host,
                port=settings.port,
                username=settings.user,
                key_filename=settings.key_file,
                allow_agent=settings.key_file is None,
                look_for_keys=settings.key_file is None,
                timeout=t,
                banner_timeout=t,
                auth_timeout=t,
                channel_timeout=t,
            )
        except Exception as e:
            client.close()
            if isinstance(e, paramiko.SSHException) and time.monotonic() - started >= t:
                # paramiko surfaces a banner/handshake timeout as varying SSHExceptions
                # ("Error reading SSH protocol banner", "No existing session", ...).
                raise HostUnreachable(host, f"timed out after {_fmt_seconds(t)} ({e})") from e
            raise HostUnreachable(host, _connect_reason(e, settings)) from e
        return cls(host, client)

    def run(self, cmd: str, timeout: float) -> CommandResult:
        """Run `cmd` through the login shell; read stdout and stderr together so neither can block."""
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise HostUnreachable(self.host, "connection lost")
        deadline = time.monotonic() + timeout
        try:
            chan = transport.open_session(timeout=timeout)
            chan.exec_command(cmd)
        except (paramiko.SSHException, OSError) as e:
            raise HostUnreachable(self.host, f"cannot start command: {e}") from e
        out: list[bytes] = []
        err: list[bytes] = []
        try:
            while True:
                while chan.recv_ready():
                    out.append(chan.recv(65536))
                while chan.recv_stderr_ready():
                    err.append(chan.recv_stderr(65536))
                # OpenSSH may send exit-status before the last data, so wait for EOF, not exit-status.
                if chan.eof_received and not chan.recv_ready() and not chan.recv_stderr_ready():
                    break
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CommandTimeout(self.host, f"command timed out after {_fmt_seconds(timeout)}")
                select.select([chan], [], [], min(remaining, 0.2))
            if not chan.status_event.wait(max(deadline - time.monotonic(), 0.1)):
                raise CommandTimeout(self.host, f"command timed out after {_fmt_seconds(timeout)}")
            rc = chan.recv_exit_status()
        finally:
            chan.close()
        return CommandResult(
            rc, b"".join(out).decode("utf-8", "replace"), b"".join(err).decode("utf-8", "replace")
        )

    def close(self) -> None:
        self._client.close()


def _connect_reason(e: BaseException, s: SshSettings) -> str:
    """Turn a connect exception into the reason an operator can act on."""
    kh = "ignored" if s.known_hosts == "ignore" else s.known_hosts_path()
    if isinstance(e, paramiko.BadHostKeyException):
        return f"host key mismatch (known_hosts: {kh})"
    if isinstance(e, _UnknownHostKey):
        return f"unknown host key (known_hosts: {kh})"
    if isinstance(e, paramiko.AuthenticationException):
        return f"authentication failed for {s.user}"
    if isinstance(e, ConnectionRefusedError):
        return f"connection refused on port {s.port}"
    if isinstance(e, socket.timeout | TimeoutError):
        return f"timed out after {_fmt_seconds(s.connect_timeout)}"
    if isinstance(e, socket.gaierror):
        return f"cannot resolve host name ({e.strerror})"
    if isinstance(e, paramiko.ssh_exception.NoValidConnectionsError):
        # paramiko wraps per-address errors; all refused is the common case.
        errs = list(e.errors.values())
        if errs and all(isinstance(x, ConnectionRefusedError) for x in errs):
            return f"connection refused on port {s.port}"
        return f"cannot connect on port {s.port}: {errs[0] if errs else e}"
    if isinstance(e, FileNotFoundError | PermissionError) and s.key_file:
        return f"cannot read key file {s.key_file}: {e.strerror}"
    if isinstance(e, OSError):
        return f"cannot connect on port {s.port}: {e.strerror or e}"
    if isinstance(e, paramiko.SSHException):
        msg = str(e)
        if "timeout" in msg.lower() or "banner" in msg.lower():
            return f"timed out after {_fmt_seconds(s.connect_timeout)} ({msg})"
        return f"ssh error: {msg}"
    return f"{type(e).__name__}: {e}"


