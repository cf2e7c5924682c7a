"""Control-machine state per cluster: lock, journal and configuration revisions.

Kept in `$KAFKAFORM_HOME/clusters/<name>/` (default ~/.kafkaform), directories 0700 and files 0600
(plans, journals and keys say what the cluster looks like and who changed it). The lock is an flock held
for the whole apply, so a second apply on the same cluster fails at once instead of interleaving.
The journal records each completed step; revisions are MSK's `currentVersion`: one line per
successful apply (who, when, spec digest).
"""

from __future__ import annotations

import fcntl
import getpass
import json
import os
import socket
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def home() -> Path:
    return Path(os.environ.get("KAFKAFORM_HOME", Path.home() / ".kafkaform"))


def private_dir(path: Path) -> Path:
    """A directory only this user can enter (created 0700; an existing one is tightened)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)
    return path


def cluster_dir(name: str) -> Path:
    for d in (home(), home() / "clusters"):
        private_dir(d)
    return private_dir(home() / "clusters" / name)


def open_private(path: Path, flags: int) -> int:
    """os.open a state file as 0600, whatever the umask, tightening one made before."""
    fd = os.open(path, flags | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o600)
    if os.fstat(fd).st_mode & 0o077:
        os.fchmod(fd, 0o600)
    return fd


def _write(path: Path, flags: int, text: str, sync: bool) -> None:
    """Write `text` to a 0600 file opened with `flags` (see open_private), synced if asked."""
    with os.fdopen(open_private(path, os.O_WRONLY | flags), "a" if flags & os.O_APPEND else "w") as f:
        f.write(text)
        f.flush()
        if sync:
            os.fsync(f.fileno())


def write_private(path: Path, text: str, sync: bool = False) -> None:
    """Replace a file's content in place, the file 0600 (see open_private)."""
    _write(path, os.O_TRUNC, text, sync)


def replace_private(path: Path, text: str) -> None:
    """A 0600 file replaced atomically: a fresh temp name in the same dir, synced, then renamed over
    it (a crash leaves the old content or the new, never half)."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    _write(tmp, os.O_EXCL, text, sync=True)
    os.replace(tmp, path)


def append_line(path: Path, line: str, sync: bool = False) -> None:
    _write(path, os.O_APPEND, line, sync)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class LockHeld(Exception):
    pass


class ApplyLock:
    """Exclusive per-cluster lock; the holder's pid and start time are written for the refusal message."""

    def __init__(self, cluster: str) -> None:
        self.path = cluster_dir(cluster) / "apply.lock"
        self.cluster = cluster
        self._fd: int | None = None

    def __enter__(self) -> ApplyLock:
        fd = open_private(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "unknown holder"
            os.close(fd)
            raise LockHeld(f"another apply is running on cluster {self.cluster!r} ({holder}); "
                           f"lock file {self.path}") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {_now()}".encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


@dataclass(frozen=True)
class PendingRestart:
    """A restart an interrupted apply planned but did not record as done."""

    step: str
    address: str
    service: str
    host: str
    started_at: str | None  # when the interrupted apply began this restart, if it did


class Journal:
    """Append-only JSON lines: one record per step started/finished, flushed at once.

    An apply records `apply_started` (with the restarts it will do), `step_started` before and
    `step_done` after each step, and `apply_done` at the end. An `apply_started` without a later
    `apply_done` is an interrupted apply: its restarts not marked done are still owed, and the
    next plan carries them (`pending_restarts`).
    """

    def __init__(self, cluster: str) -> None:
        self.path = cluster_dir(cluster) / "journal.jsonl"

    def record(self, **fields: Any) -> None:
        from reconciler.security.secrets import scrub  # (a secret in an error message stays out)

        append_line(self.path, scrub(json.dumps({"at": _now(), "t": round(time.time(), 3), **fields},
                                                sort_keys=True)) + "\n", sync=True)

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text().splitlines():
            try:
                out.append(json.loads(line))
            except ValueError:
                continue  # a line cut short by a kill mid-write
        return out

    def pending_restarts(self) -> list[PendingRestart]:
        entries = self.entries()
        starts = [i for i, e in enumerate(entries) if e.get("event") == "apply_started"]
        if not starts:
            return []
        last = starts[-1]
        tail = entries[last + 1 :]
        if any(e.get("event") == "apply_done" for e in tail):
            return []
        done = {e.get("step") for e in tail if e.get("event") == "step_done"}
        began = {e.get("step"): e.get("at") for e in tail if e.get("event") == "step_started"}
        return [PendingRestart(step=r["step"], address=r["address"], service=r["service"], host=r["host"],
                               started_at=began.get(r["step"]))
                for r in entries[last].get("restarts", []) if r["step"] not in done]


def revisions(cluster: str) -> list[dict[str, Any]]:
    p = cluster_dir(cluster) / "revisions.jsonl"
    if not p.exists():
        return []
    return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]


def record_revision(cluster: str, spec_digest: str, hosts: list[str], summary: dict[str, int]) -> int:
    rev = len(revisions(cluster)) + 1
    entry = {"revision": rev, "at": _now(), "by": getpass.getuser(), "spec_digest": spec_digest,
             "hosts": hosts, "summary": summary}
    append_line(cluster_dir(cluster) / "revisions.jsonl", json.dumps(entry, sort_keys=True) + "\n", sync=True)
    return rev


def known_hosts_of(cluster: str) -> list[str]:
    """Hosts of the last applied revision: observed too, so dropped hosts can be cleaned up."""
    revs = revisions(cluster)
    return list(revs[-1]["hosts"]) if revs else []


def kraft_identity(cluster: str) -> dict[str, Any] | None:
    """The KRaft cluster id and initial controllers this machine formatted the cluster with."""
    p = cluster_dir(cluster) / "kraft.json"
    if not p.exists():
        return None
    try:
        doc = json.loads(p.read_text())
    except ValueError:
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("cluster_id"), str) else None


def save_kraft_identity(cluster: str, cluster_id: str, initial_controllers: str | None) -> None:
    """Kept before the first node is formatted, so an interrupted create formats the rest alike."""
    write_private(cluster_dir(cluster) / "kraft.json",
                  json.dumps({"cluster_id": cluster_id, "initial_controllers": initial_controllers}), sync=True)


def forget_kraft_identity(cluster: str) -> None:
    """After a destroy: the next create is a new cluster."""
    (cluster_dir(cluster) / "kraft.json").unlink(missing_ok=True)


def access_state(cluster: str) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The users kafkaform set (name -> keyed digest of the password it set) and the ACL rows it
    created, for this cluster (empty when it never managed any)."""
    p = cluster_dir(cluster) / "access.json"
    try:
        doc = json.loads(p.read_text())
    except (FileNotFoundError, ValueError):
        return {}, []
    return dict(doc.get("users") or {}), list(doc.get("acls") or [])


def save_access_state(cluster: str, users: dict[str, str], acls: list[dict[str, str]]) -> None:
    replace_private(cluster_dir(cluster) / "access.json",
                    json.dumps({"users": dict(sorted(users.items())), "acls": acls}, indent=1, sort_keys=True))
