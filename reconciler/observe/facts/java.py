"""Java runtime version, or None when no `java` is on PATH (then the plan installs one).

`java -version` prints to stderr, e.g. `openjdk version "17.0.15" 2025-04-15`. Serial GC and a tiny
heap halve the JVM start cost (the default reserves 1/4 of RAM and starts G1 threads), which
matters when many lab hosts share the control machine's cores.
"""

from __future__ import annotations

import re

NAME = "java"

_VERSION = re.compile(r'^\S+ version "([^"]+)"', re.MULTILINE)


def command() -> str:
    return (
        "if command -v java >/dev/null 2>&1; then java -XX:+UseSerialGC -Xmx16m -version 2>&1; "
        'else echo "java: not found"; fi'
    )


def parse(text: str) -> str | None:
    m = _VERSION.search(text)
    return m.group(1) if m else None
