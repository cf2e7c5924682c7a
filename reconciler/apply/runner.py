"""ansible-runner adapter: run one step playbook on a set of hosts, report per host.

A run can be started ahead of time and held: the step playbook's first task (on the control
machine) waits for a go-ahead file, so Ansible's start-up (interpreter, playbook and inventory
parsing) happens while kafkaform is still waiting on a health gate, not on a rolling restart's
critical path. A held run touches no host until `go()`; `cancel()` or the death of kafkaform ends
it there. A step counts as done on a host when that host reaches the playbook's "step done"
task; the rest of the run (statistics, process exit) finishes in the background.

The private data dir holds rendered files (possibly secrets) and is deleted after each run.

Ansible never templates kafkaform's data. Ansible evaluates any string it reads from an
inventory as Jinja (a spec value `{{ lookup('pipe', ...) }}` would run a command on the control
machine), and its `!unsafe` tag is no way out: ansible-core 2.19 re-resolves a tagged scalar's
type, so the content "1\n" arrives as the integer 1. So file contents travel base64-encoded
(`content_b64`, written by playbooks/library/kf_files.py), and every string the inventory holds
(paths, names, modes, hosts, artifact ids: each checked for its field) is refused before the run
if it could contain template syntax at all.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ansible_runner

PLAYBOOKS = Path(os.environ.get("KAFKAFORM_PLAYBOOKS", Path(__file__).resolve().parents[2] / "playbooks"))
DONE_TASK = "step done"  # name of the marker task ending a step playbook on each host (done.yml)
GO_TASK = "go-ahead"  # name of the task holding a run on the control machine (held.yml)


@dataclass
class HostResult:
    host: str
    ok: bool
    changed: bool = False
    message: str | None = None
    seconds: float = 0.0


def ansible_env() -> dict[str, str]:
    # ansible-playbook from the same environment as kafkaform (a venv need not be activated)
    path = os.pathsep.join([os.path.dirname(sys.executable), os.environ.get("PATH", os.defpath)])
    return {
        "PATH": path,
        "ANSIBLE_ROLES_PATH": str(PLAYBOOKS / "roles"),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=120s -o ServerAliveInterval=15",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_TIMEOUT": "20",
    }


PDD_PREFIX = "kafkaform-ansible-"


_TEMPLATE_SYNTAX = ("{{", "{%", "{#")


class TemplatedDataError(ValueError):
    """A value headed for Ansible that it would evaluate as a template (a bug upstream: fields are
    checked before they get here)."""


def check_no_templates(inventory: Any) -> None:
    """Raise TemplatedDataError for any string Ansible would evaluate as a template."""
    if isinstance(inventory, dict):
        for k, v in inventory.items():
            check_no_templates(k)
            check_no_templates(v)
    elif isinstance(inventory, list | tuple):
        for v in inventory:
            check_no_templates(v)
    elif isinstance(inventory, str) and any(t in inventory for t in _TEMPLATE_SYNTAX):
        raise TemplatedDataError(f"{inventory[:80]!r} would be evaluated by Ansible as a template; refusing to run")


def _run_processes(run_dir: Path) -> list[int]:
    """Processes (ansible-playbook and its workers) working in a run dir: their argv names it."""
    needle = str(run_dir).encode() + b"/"
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if needle in (proc / "cmdline").read_bytes():
                out.append(int(proc.name))
        except OSError:
            continue
    return out


def _owner_alive(run_dir: Path) -> bool | None:
    """True/False for a run dir of ours; None when it is not ours to judge (no owner file)."""
    try:
        pid = int((run_dir / "owner.pid").read_text())
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (OSError, ValueError):
        return None
    return True


def orphaned_runs(cluster: str | None = None) -> dict[Path, list[int]]:
    """Ansible runs still going whose kafkaform was killed (of `cluster`, when given): each is
    finishing the step it had been let go on, e.g. a restart, and changes hosts until it ends."""
    out: dict[Path, list[int]] = {}
    for d in Path(tempfile.gettempdir()).glob(f"{PDD_PREFIX}*"):
        if _owner_alive(d) is not False:
            continue
        if cluster is not None:
            try:
                if (d / "cluster").read_text() != cluster:
                    continue
            except OSError:
                pass  # a run dir of an older kafkaform: it may be this cluster's
        pids = _run_processes(d)
        if pids:
            out[d] = pids
    return out


class OrphanedRunStillRunning(RuntimeError):
    pass


def _last_task(run_dir: Path) -> str | None:
    """The task an Ansible run last started, from its stdout (ansible-runner writes it under
    artifacts/), so a wait on a run a killed apply left behind can say what that run is doing."""
    for out in run_dir.glob("artifacts/*/stdout"):
        try:
            with out.open("rb") as f:
                f.seek(max(0, out.stat().st_size - 16384))
                tail = f.read().decode("utf-8", "replace")
        except OSError:
            continue
        tasks = [ln.strip().rstrip("*").strip() for ln in tail.splitlines() if ln.startswith("TASK [")]
        if tasks:
            return tasks[-1]
    return None


def _describe(runs: dict[Path, list[int]]) -> str:
    parts = []
    for d, pids in runs.items():
        task = _last_task(d)
        parts.append(f"pids {', '.join(str(p) for p in pids)}" + (f", at {task}" if task else ""))
    return "; ".join(parts)


# The longest one step may legitimately run on a host: a Kafka restart may take the unit's
# TimeoutStopSec (180 s) to stop and then the playbook's wait for the port (180 s).
ORPHAN_WAIT_S = 600


def wait_for_orphans(cluster: str, timeout_s: float = ORPHAN_WAIT_S,
                     progress: Callable[[str], None] | None = None) -> None:
    """Before a new apply observes the hosts: let the Ansible runs a killed apply left behind end,
    so the hosts are read after their step, not halfway (a restart then counts once, not twice)."""
    deadline = time.monotonic() + timeout_s
    said = False
    while runs := orphaned_runs(cluster):
        if not said and progress:
            progress(f"waiting for {len(runs)} Ansible run(s) an interrupted apply left running "
                     f"({_describe(runs)}) to finish their step")
            said = True
        if time.monotonic() > deadline:
            raise OrphanedRunStillRunning(
                f"an Ansible run left by an interrupted apply of cluster {cluster!r} is still running after "
                f"{timeout_s:.0f}s ({_describe(runs)}); wait for it or stop it, then apply again")
        time.sleep(0.2)


def sweep_orphans(min_age_s: float = 120) -> None:
    """Delete run dirs left by a kafkaform process that was killed (they may hold rendered secrets).
    A younger one is kept, and one an orphaned Ansible run still works in."""
    for d in Path(tempfile.gettempdir()).glob(f"{PDD_PREFIX}*"):
        if _owner_alive(d) is not False:
            continue  # its kafkaform still runs, or not ours to judge (another user's, no owner file)
        try:
            if time.time() - d.stat().st_mtime < min_age_s or _run_processes(d):
                continue
        except OSError:
            continue
        shutil.rmtree(d, ignore_errors=True)


class StepRun:
    """One ansible-runner run of `playbooks/<playbook>` limited to `hosts`, held until `go()`."""

    def __init__(self, playbook: str, inventory: dict[str, Any], hosts: list[str],
                 extravars: dict[str, Any] | None = None,
                 on_task: Callable[[str, str, str], None] | None = None, cluster: str | None = None) -> None:
        self.hosts = list(hosts)
        self.results = {h: HostResult(host=h, ok=True) for h in hosts}
        self._on_task = on_task
        self._finished_hosts: set[str] = set()
        self._reached: threading.Event = threading.Event()
        self._cancelled = False
        self._went_at: float | None = None
        self._lock = threading.Lock()
        sweep_orphans()
        self._pdd = tempfile.mkdtemp(prefix=PDD_PREFIX)
        os.chmod(self._pdd, 0o700)
        (Path(self._pdd) / "owner.pid").write_text(str(os.getpid()))
        if cluster is not None:
            (Path(self._pdd) / "cluster").write_text(cluster)
        self._go_file = Path(self._pdd) / "go"
        self._final: dict[str, HostResult] | None = None
        try:
            check_no_templates(inventory)
        except TemplatedDataError:
            shutil.rmtree(self._pdd, ignore_errors=True)
            raise
        self._thread, self._runner = ansible_runner.run_async(
            private_data_dir=self._pdd,
            playbook=str(PLAYBOOKS / playbook),
            inventory=inventory,
            limit=",".join(hosts),
            extravars={**(extravars or {}), "kf_go_file": str(self._go_file), "kf_parent_pid": os.getpid()},
            envvars=ansible_env(),
            forks=max(5, min(50, len(hosts))),
            quiet=True,
            event_handler=self._handle,
            cancel_callback=lambda: self._cancelled,
        )

    def _handle(self, event: dict[str, Any]) -> bool:
        data = event.get("event_data", {})
        host = data.get("host")
        kind = event.get("event", "")
        if host not in self.results:
            return False
        res = data.get("res", {}) or {}
        with self._lock:
            r = self.results[host]
            if kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
                r.ok = False
                msg = res.get("msg") or res.get("stderr") or kind
                r.message = f"{data.get('task', '?')}: {str(msg).strip()[:500]}"
                self._host_finished(host)
            elif kind == "runner_on_ok":
                if res.get("changed"):
                    r.changed = True
                if data.get("task") == DONE_TASK:
                    self._host_finished(host)
        if self._on_task and kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable") \
                and data.get("task") not in (DONE_TASK, GO_TASK):
            self._on_task(host, data.get("task", ""), kind.removeprefix("runner_on_"))
        return False  # do not keep event files

    def _host_finished(self, host: str) -> None:
        self._finished_hosts.add(host)
        self.results[host].seconds = time.monotonic() - (self._went_at or time.monotonic())
        if self._finished_hosts >= set(self.hosts):
            self._reached.set()

    def go(self) -> StepRun:
        """Let the run touch its hosts."""
        self._went_at = time.monotonic()
        self._go_file.touch()
        return self

    def cancel(self) -> None:
        """End a run that was never let go (no host touched) and clean up."""
        if self._went_at is not None:
            return self.close()
        self._cancelled = True
        self._go_file.unlink(missing_ok=True)
        self._thread.join(timeout=60)
        shutil.rmtree(self._pdd, ignore_errors=True)

    def close(self) -> None:
        """Clean up: a held run is cancelled, a running one is waited for (it is changing hosts)."""
        if self._went_at is None:
            self.cancel()
        elif self._final is None:
            self.finish()

    def wait(self) -> dict[str, HostResult]:
        """Results as soon as every host finished its step (or the run ended, whichever is first)."""
        while not self._reached.wait(0.05):
            if not self._thread.is_alive():
                return self.finish()
        return {h: HostResult(**vars(r)) for h, r in self.results.items()}

    def finish(self) -> dict[str, HostResult]:
        """Wait for the run to end; final per-host results (a non-zero exit fails every host still ok)."""
        if self._final is not None:
            return self._final
        self._thread.join()
        r = self._runner
        try:
            for h, res in self.results.items():
                if not res.seconds:
                    res.seconds = time.monotonic() - (self._went_at or time.monotonic())
                if r.rc != 0 and res.ok and h in (r.stats or {}).get("failures", {}):
                    res.ok = False
                    res.message = res.message or "failed"
            if r.rc != 0 and all(x.ok for x in self.results.values()):
                out = ""
                try:
                    out = r.stdout.read()[-1500:]
                except Exception:  # noqa: BLE001 - best effort diagnostics
                    pass
                for res in self.results.values():
                    res.ok = False
                    res.message = f"ansible-playbook exited {r.rc}: {out.strip()}"
            self._final = self.results
            return self._final
        finally:
            shutil.rmtree(self._pdd, ignore_errors=True)


def run_playbook(playbook: str, inventory: dict[str, Any], hosts: list[str],
                 extravars: dict[str, Any] | None = None,
                 on_task: Callable[[str, str, str], None] | None = None) -> dict[str, HostResult]:
    """Run `playbooks/<playbook>` limited to `hosts` now; return one HostResult per host."""
    return StepRun(playbook, inventory, hosts, extravars, on_task).go().finish()
