"""Total memory in bytes, from /proc/meminfo MemTotal (reported in KiB despite the `kB` label)."""

from __future__ import annotations

from . import FactError

NAME = "memory"


def command() -> str:
    # (the shell's `read`, not grep: one process fewer per host)
    return ("while read -r k v u; do [ \"$k\" = MemTotal: ] && { printf '%s %s %s\\n' \"$k\" \"$v\" \"$u\"; break; }; "
            "done < /proc/meminfo")


def parse(text: str) -> int:
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 2 and fields[0] == "MemTotal:":
            unit = fields[2] if len(fields) > 2 else "kB"
            if unit != "kB" or not fields[1].isdigit():
                raise FactError(f"unexpected MemTotal line: {line!r}")
            return int(fields[1]) * 1024
    raise FactError(f"no MemTotal in output: {text.strip()[:200]!r}")
