"""Java runtime version, or None when no `java` is on PATH (then the plan installs one).

Read from the JDK's `release` file (`JAVA_VERSION="17.0.15"`) beside the resolved `java` binary,
which costs a file read instead of a JVM start (≈150 ms and a core per host; it dominated
observe on many hosts). Falls back to `java -version` (stderr: `openjdk version "17.0.15" ...`)
when there is no release file; Serial GC and a tiny heap halve that JVM's start cost.
"""

from __future__ import annotations

import re

NAME = "java"

_VERSION = re.compile(r'^\S+ version "([^"]+)"', re.MULTILINE)
_RELEASE = re.compile(r'^JAVA_VERSION="([^"]+)"', re.MULTILINE)


def command() -> str:
    # One process besides the shell (readlink): the two dirnames are parameter expansions and the
    # release file is read by the shell's own `read` (observe runs ~40 processes per host, CPU-bound).
    return (
        'j=$(command -v java 2>/dev/null) || { echo "java: not found"; exit 0; }; '
        'h=$(readlink -f "$j"); h=${h%/*}; h=${h%/*}; r="$h/release"; f=; '
        'if [ -r "$r" ]; then while IFS= read -r l || [ -n "$l" ]; do '
        'case $l in JAVA_VERSION=*) printf \'%s\\n\' "$l"; f=1; break ;; esac; done < "$r"; fi; '
        '[ -n "$f" ] || java -XX:+UseSerialGC -Xmx16m -version 2>&1'
    )


def parse(text: str) -> str | None:
    m = _RELEASE.search(text) or _VERSION.search(text)
    return m.group(1) if m else None
