"""SSH access for observe and Kafka's tools: one connection per host, one command per fact script.

Observe must not go through Ansible: it has to be fast (one round trip per host, all hosts in
parallel) and it must say *why* a host could not be reached, so every connect failure is turned
into `HostUnreachable(host, reason)` with a short, specific reason.

Two transports: OpenSSH's client with a private ControlPersist master per host (the default where
`ssh` is installed: plan after plan reuses the connection, like Ansible does) and paramiko (where
it is not, or with KAFKAFORM_SSH=paramiko). paramiko is imported only when used.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

KnownHostsMode = Literal["strict", "accept-new", "ignore"]


@dataclass(frozen=True)
class SshSettings:
    """How to reach managed hosts. `known_hosts_file` None means the user's ~/.ssh/known_hosts."""

    user: str = "root"
    port: int = 22
    key_file: str | None = None
    known_hosts: KnownHostsMode = "strict"
    known_hosts_file: str | None = None
    connect_timeout: float = 5.0

    def known_hosts_path(self) -> str:
        return self.known_hosts_file or os.path.expanduser("~/.ssh/known_hosts")


@dataclass(frozen=True)
class CommandResult:
    rc: int
    stdout: str
    stderr: str


class HostUnreachable(Exception):
    """The host could not be connected to (or a command on it could not complete)."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"{host}: {reason}")
        self.host = host
        self.reason = reason


class CommandTimeout(HostUnreachable):
    """A command did not finish in time; the connection is unusable afterwards."""


class Transport(Protocol):
    """What observe needs from a connection: run a shell command, close."""

    def run(self, cmd: str, timeout: float) -> CommandResult: ...

    def close(self) -> None: ...


TransportFactory = Callable[[str, SshSettings], Transport]


def _fmt_seconds(s: float) -> str:
    return f"{s:g}s"


def default_factory() -> TransportFactory:
    """OpenSSH where its client is installed (unless KAFKAFORM_SSH=paramiko), else paramiko."""
    if os.environ.get("KAFKAFORM_SSH") != "paramiko" and shutil.which("ssh"):
        from reconciler.observe.openssh import OpenSshTransport

        return OpenSshTransport.connect
    from reconciler.observe.paramiko_ssh import ParamikoTransport

    return ParamikoTransport.connect


def __getattr__(name: str) -> Any:  # ParamikoTransport stays importable from here, loaded on use
    if name == "ParamikoTransport":
        from reconciler.observe.paramiko_ssh import ParamikoTransport

        return ParamikoTransport
    raise AttributeError(name)


Responder = Callable[[str], CommandResult | str]


class FakeTransport:
    """In-memory `Transport` for tests: maps a command to its output (or computes it)."""

    def __init__(self, responses: Mapping[str, CommandResult | str] | Responder) -> None:
        self._responses = responses
        self.commands: list[str] = []
        self.closed = False

    def run(self, cmd: str, timeout: float) -> CommandResult:
        self.commands.append(cmd)
        if callable(self._responses):
            res = self._responses(cmd)
        elif cmd in self._responses:
            res = self._responses[cmd]
        else:
            res = CommandResult(127, "", f"sh: 1: {cmd.split()[0] if cmd.split() else cmd}: not found\n")
        return CommandResult(0, res, "") if isinstance(res, str) else res

    def close(self) -> None:
        self.closed = True
