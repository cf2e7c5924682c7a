"""systemd state of the kafka/zookeeper units.

`systemctl show --timestamp=utc -p ...` (UTC, so start times compare with the journal's; systemd
>= 248) prints the requested properties even for a unit that does not exist (LoadState=not-found):
ActiveState=inactive, MainPID=0, empty UnitFileState and timestamp, rc 0. When systemctl cannot
talk to systemd at all (not PID 1, no bus), no properties come back and the state is reported as
"unknown" rather than guessed.
"""

from __future__ import annotations

from ..model import ServiceState
from . import FactError, sh_quote

NAME = "services"

PROPERTIES = "ActiveState,UnitFileState,MainPID,ActiveEnterTimestamp"
_ENABLED = {"enabled", "enabled-runtime"}


def command(units: tuple[str, ...] | list[str]) -> str:
    if not units:
        return ":"
    names = " ".join(sh_quote(u) for u in units)
    services = " ".join(sh_quote(f"{u}.service") for u in units)
    # One systemctl call for every unit (each call costs a bus connection). Its output is one block
    # per unit, separated by blank lines, properties in systemd's order (Id may come last), so a
    # block is printed under its `unit` line once it ends; then the build the process runs: its
    # -cp '<dir>/<artifact_id>/libs/*' argument, from /proc/<MainPID>/cmdline: one grep reads its
    # NUL-separated arguments (-z) and prints the one that matches with its NUL, dropped here.
    return (
        f"out=$(systemctl show --timestamp=utc -p Id,{PROPERTIES} {services} 2>&1)\n"
        'case $out in *Id=*) ;; *) for u in ' + names + ';'
        ' do printf \'unit %s\\n%s\\n\' "$u" "$out"; done; out= ;; esac\n'
        "u=; p=0; block=\n"
        "printf '%s\\n\\n' \"$out\" | while IFS= read -r line; do\n"
        '  if [ -z "$line" ]; then\n'
        '    if [ -n "$u" ]; then\n'
        "      printf 'unit %s\\n%s' \"$u\" \"$block\"\n"
        '      if [ "${p:-0}" -gt 0 ] 2>/dev/null; then\n'
        "        printf 'Classpath='; grep -a -z -m1 '/libs/\\*$' \"/proc/$p/cmdline\" 2>/dev/null; printf '\\n'\n"
        "      fi\n"
        "    fi\n"
        "    u=; p=0; block=; continue\n"
        "  fi\n"
        '  case $line in Id=*) u=${line#Id=}; u=${u%.service} ;; MainPID=*) p=${line#MainPID=} ;; esac\n'
        '  case $line in Id=*) ;; *) block="$block$line\n" ;; esac\n'
        "done"
    )


def _state(name: str, props: dict[str, str]) -> ServiceState:
    if "ActiveState" not in props:
        return ServiceState(name=name, active="unknown")
    pid_s = props.get("MainPID", "0")
    try:
        pid = int(pid_s) or None
    except ValueError as e:
        raise FactError(f"unit {name}: MainPID={pid_s!r}") from e
    ts = props.get("ActiveEnterTimestamp", "")
    cp = props.get("Classpath", "").rstrip("\0")
    running = cp.rsplit("/", 3)[-3] if pid and cp.endswith("/libs/*") and cp.count("/") >= 3 else None
    return ServiceState(
        name=name,
        active=props["ActiveState"] or "unknown",
        enabled=props.get("UnitFileState", "") in _ENABLED,
        pid=pid,
        started_at=ts if ts and ts != "n/a" else None,
        running_artifact=running,
    )


def parse(text: str) -> dict[str, ServiceState]:
    units: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        if line.startswith("unit "):
            current = units.setdefault(line[5:], {})
        elif current is not None and "=" in line:
            key, _, value = line.partition("=")
            current[key] = value
        elif current is None and line.strip():
            raise FactError(f"unexpected services output: {line[:200]!r}")
    return {name: _state(name, props) for name, props in units.items()}
