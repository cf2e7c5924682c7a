"""Disk space used by given directories (`du -sk`, allocated blocks, in bytes).

Allocated, not apparent size: Kafka preallocates sparse index files (10 MiB each), so apparent
sizes would report gigabytes for an empty broker. A missing directory is left out, not reported as 0.

Not part of the plan fingerprint (byte counts move on a healthy cluster); a `du` that prints no
total (e.g. the directory vanished mid-walk) is also left out rather than failing the host.
"""

from __future__ import annotations

from . import FactError, each_dir

NAME = "dir_usage"


def command(dirs: tuple[str, ...] | list[str]) -> str:
    return each_dir(
        dirs,
        '  if [ -d "$d" ]; then k=$(du -sk -- "$d" 2>/dev/null | cut -f1); '
        's=-; [ -n "$k" ] && s=$((k * 1024)); '
        'printf \'dir %s %s\\n\' "$s" "$d"\n'
        "  else printf 'absent - %s\\n' \"$d\"; fi\n",
    )


def parse(text: str) -> dict[str, int]:
    usage: dict[str, int] = {}
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(" ", 2)
        if len(parts) != 3 or parts[0] not in ("dir", "absent"):
            raise FactError(f"unexpected dir_usage line: {line[:200]!r}")
        kind, size, path = parts
        if kind == "dir" and size.isdigit():
            usage[path] = int(size)
    return usage
