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
    # One `du` for every dir that exists (not one `du | cut` each: observe is CPU-bound on the
    # processes it starts). `-l` counts a file again under each dir that holds it, so a dir nested
    # in another still gets its own total (without it du skips what it has already counted).
    if not dirs:
        return ":"
    return (
        "set --\n"
        + each_dir(dirs, '  if [ -d "$d" ]; then set -- "$@" "$d"; else printf \'absent - %s\\n\' "$d"; fi\n')
        + '\n[ $# -eq 0 ] || du -s -k -l -- "$@" 2>/dev/null'
    )


def parse(text: str) -> dict[str, int]:
    """`du` lines (`<KiB>\\t<dir>`) and `absent - <dir>` lines."""
    usage: dict[str, int] = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("absent - "):
            continue
        size, tab, path = line.partition("\t")
        if not tab or not size.isdigit() or not path:
            raise FactError(f"unexpected dir_usage line: {line[:200]!r}")
        usage[path] = int(size) * 1024
    return usage
