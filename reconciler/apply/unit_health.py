"""Why a service that was just started is not up: systemd's own account of its unit.

A gate after a start or restart waits for the cluster to see the node (registered, caught up, in
the quorum). When the service cannot run at all (a crash loop, a unit systemd gave up on), the
cluster only stays silent: this reads the unit's state over SSH so the apply fails early and names
the host, the unit and its last exit instead of waiting out the gate. Only systemd's properties are
read, never the journal or the service's logs, whose lines could carry configuration values.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from reconciler.observe.facts import sh_quote
from reconciler.observe.ssh import HostUnreachable, TransportFactory, default_factory
from reconciler.observe.targets import ssh_settings
from reconciler.spec import ClusterSpec

PROPERTIES = "Id,ActiveState,SubState,NRestarts,ExecMainCode,ExecMainStatus"
CRASH_LOOP_RESTARTS = 3  # automatic restarts since the start kafkaform made: the service cannot run
WATCH_EVERY_S = 10.0  # how often a gate that waits reads the units (a quick gate never does)

# systemd's own exit statuses (systemd.exec(5)): the process never reached its program
SYSTEMD_EXITS = {
    200: "CHDIR: it could not enter its working directory", 203: "EXEC: its program could not be run",
    204: "MEMORY", 205: "LIMITS", 208: "STDIN", 209: "STDOUT", 210: "CHROOT", 214: "SETSCHEDULER",
    216: "GROUP: its group does not exist", 217: "USER: its user does not exist", 218: "CAPABILITIES",
    219: "CGROUP", 222: "STDERR", 225: "NETWORK_NAMESPACE", 226: "NAMESPACE", 228: "SECCOMP",
    233: "RUNTIME_DIRECTORY", 235: "CHOWN", 238: "STATE_DIRECTORY", 240: "LOGS_DIRECTORY",
}
_CLD = {"1": "exited", "2": "was killed", "3": "dumped core"}  # ExecMainCode (waitid's CLD_*)

Units = dict[str, tuple[str, ...]]  # host -> the services (unit names) started there
factory: TransportFactory | None = None  # unit tests put an in-memory transport here


def command(services: Iterable[str]) -> str:
    return f"systemctl show -p {PROPERTIES} " + " ".join(sh_quote(f"{s}.service") for s in services)


def parse(stdout: str) -> dict[str, dict[str, str]]:
    """`systemctl show` blocks (one per unit, blank-line separated) by unit name."""
    units: dict[str, dict[str, str]] = {}
    for block in stdout.strip().split("\n\n"):
        props = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
        if props.get("Id"):
            units[props["Id"].removesuffix(".service")] = props
    return units


def last_exit(props: dict[str, str]) -> str:
    code, status = props.get("ExecMainCode", "0"), props.get("ExecMainStatus", "0")
    if code not in _CLD:
        return ""
    if code != "1":
        return f"its process {_CLD[code]} (signal {status})"
    n = int(status) if status.isdigit() else -1
    return f"its process last exited with status {status}" + (f" ({SYSTEMD_EXITS[n]})" if n in SYSTEMD_EXITS else "")


def trouble(props: dict[str, str], crash_loop: int = CRASH_LOOP_RESTARTS) -> str | None:
    """What is wrong with a unit that should be running, or None while it may still come up."""
    active, sub = props.get("ActiveState", "unknown"), props.get("SubState", "")
    restarts = int(props["NRestarts"]) if props.get("NRestarts", "").isdigit() else 0
    if active in ("failed", "inactive") or (active != "active" and restarts >= crash_loop):
        why = [f"{active} ({sub})" if sub else active]
        if restarts:
            why.append(f"after {restarts} automatic restart(s)")
        if exit_ := last_exit(props):
            why.append(exit_)
        return ", ".join(why)
    return None


def read(spec: ClusterSpec, units: Units) -> dict[tuple[str, str], dict[str, str] | str]:
    """Each unit's properties, or why its host could not be asked."""
    out: dict[tuple[str, str], dict[str, str] | str] = {}
    for host, services in units.items():
        try:
            t = (factory or default_factory())(host, ssh_settings(spec))
            try:
                res = t.run(command(services), 20)
            finally:
                t.close()
        except HostUnreachable as e:
            out.update({(host, s): f"cannot ask systemd on {host}: {e.reason}" for s in services})
            continue
        got = parse(res.stdout)
        out.update({(host, s): got.get(s, f"systemctl show failed on {host}") for s in services})
    return out


def diagnose(spec: ClusterSpec, units: Units, sure: bool = False) -> list[str]:
    """One line per unit that is not running as it should ("kafka on 10.0.0.1: failed, ...").
    `sure`: only what systemd said (not a host that could not be asked)."""
    lines = []
    for (host, service), props in read(spec, units).items():
        if isinstance(props, str):
            why = None if sure else props
        else:
            why = trouble(props)
        if why:
            lines.append(f"{service} on {host}: {why} (journalctl -u {service} on the host tells why)")
    return lines


def watcher(spec: ClusterSpec, units: Units) -> Callable[[], str | None]:
    """For a gate that waits: every WATCH_EVERY_S, a reason to stop waiting (a unit in a crash loop
    or failed), or None."""
    last = [time.monotonic()]

    def check() -> str | None:
        if not units or time.monotonic() - last[0] < WATCH_EVERY_S:
            return None
        last[0] = time.monotonic()
        return "; ".join(diagnose(spec, units, sure=True)) or None

    return check
