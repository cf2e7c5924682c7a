"""What the lab records (``<lab_dir>/state.json``) and how far a record is trusted.

A recorded pid counts as a running host only while it is still that host's nspawn (pids get reused).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from .cgroups import _pid_alive
from .paths import LabError, host_address, host_name, lab_dir, state_path


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
    disks: list[str] = field(default_factory=list)  # blank block devices it gets, by path (see lab.disks)


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


def _is_nspawn_of(pid: int, h: LabHost) -> bool:
    """Guard against pid reuse: only signal a recorded pid if it is still this host's nspawn."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return bool(argv) and argv[0].endswith(b"systemd-nspawn") and f"--machine={h.name}".encode() in argv


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


def status() -> LabState | None:
    """The recorded lab with live ``running`` flags, or None when no lab state exists."""
    state = _load()
    return _refresh(state) if state else None


def _require_state() -> LabState:
    state = _load()
    if state is None:
        raise LabError(f"no lab is up (no {state_path()}): run `lab up N` first")
    return state
