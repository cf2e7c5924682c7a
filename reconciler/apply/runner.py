"""ansible-runner adapter: run one step playbook on a set of hosts, report per host.

The private data dir holds rendered files (possibly secrets) and is deleted after each run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ansible_runner

PLAYBOOKS = Path(os.environ.get("KAFKAFORM_PLAYBOOKS", Path(__file__).resolve().parents[2] / "playbooks"))


@dataclass
class HostResult:
    host: str
    ok: bool
    changed: bool = False
    message: str | None = None
    seconds: float = 0.0


def ansible_env() -> dict[str, str]:
    return {
        "ANSIBLE_ROLES_PATH": str(PLAYBOOKS / "roles"),
        "ANSIBLE_PIPELINING": "True",
        "ANSIBLE_SSH_ARGS": "-o ControlMaster=auto -o ControlPersist=120s -o ServerAliveInterval=15",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
        "ANSIBLE_NOCOLOR": "True",
        "ANSIBLE_DEPRECATION_WARNINGS": "False",
        "ANSIBLE_LOCALHOST_WARNING": "False",
        "ANSIBLE_TIMEOUT": "20",
    }


def run_playbook(playbook: str, inventory: dict[str, Any], hosts: list[str],
                 extravars: dict[str, Any] | None = None,
                 on_task: Callable[[str, str, str], None] | None = None) -> dict[str, HostResult]:
    """Run `playbooks/<playbook>` limited to `hosts`; return one HostResult per host."""
    results = {h: HostResult(host=h, ok=True) for h in hosts}
    started = time.monotonic()

    def handler(event: dict[str, Any]) -> bool:
        data = event.get("event_data", {})
        host = data.get("host")
        kind = event.get("event", "")
        if host in results:
            res = data.get("res", {}) or {}
            if kind in ("runner_on_failed", "runner_on_unreachable") and not data.get("ignore_errors"):
                r = results[host]
                r.ok = False
                msg = res.get("msg") or res.get("stderr") or kind
                r.message = f"{data.get('task', '?')}: {str(msg).strip()[:500]}"
            elif kind == "runner_on_ok" and res.get("changed"):
                results[host].changed = True
            if on_task and kind in ("runner_on_ok", "runner_on_failed", "runner_on_unreachable"):
                on_task(host, data.get("task", ""), kind.removeprefix("runner_on_"))
        return False  # do not keep event files

    pdd = tempfile.mkdtemp(prefix="kafkaform-ansible-")
    os.chmod(pdd, 0o700)
    try:
        r = ansible_runner.run(
            private_data_dir=pdd,
            playbook=str(PLAYBOOKS / playbook),
            inventory=inventory,
            limit=",".join(hosts),
            extravars=extravars or {},
            envvars=ansible_env(),
            forks=max(5, min(50, len(hosts))),
            quiet=True,
            event_handler=handler,
        )
        for h, res in results.items():
            res.seconds = time.monotonic() - started
            if r.rc != 0 and res.ok and h in (r.stats or {}).get("failures", {}):
                res.ok = False
                res.message = res.message or "failed"
        if r.rc != 0 and all(x.ok for x in results.values()):
            out = ""
            try:
                out = r.stdout.read()[-1500:]
            except Exception:  # noqa: BLE001 - best effort diagnostics
                pass
            for res in results.values():
                res.ok = False
                res.message = f"ansible-playbook exited {r.rc}: {out.strip()}"
        return results
    finally:
        shutil.rmtree(pdd, ignore_errors=True)
