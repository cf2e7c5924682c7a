"""Installed Kafka/ZooKeeper artifacts, from the `ARTIFACT` marker install writes last.

A directory under an install root (the spec's `install_dir`s, /opt/kafka and /opt/zookeeper by
default) without a (valid) marker is a half-finished install: it is reported as not installed, so
the plan installs it again rather than starting broken jars.
"""

from __future__ import annotations

import json
import posixpath

from ..model import InstalledArtifact
from . import FactError, b64decode, sh_quote

NAME = "artifacts"

ROOTS = ("/opt/kafka", "/opt/zookeeper")


def command(roots: tuple[str, ...] | list[str] = ROOTS) -> str:
    globs = " ".join(f"{sh_quote(r)}/*" for r in dict.fromkeys(roots))
    return (
        f"for d in {globs}; do\n"
        '  [ -d "$d" ] || continue\n'
        '  if [ -f "$d/ARTIFACT" ]; then printf \'artifact %s %s\\n\' "$(base64 -w0 < "$d/ARTIFACT")" "$d"\n'
        "  else printf 'partial - %s\\n' \"$d\"; fi\n"
        "done"
    )


def parse(text: str) -> tuple[InstalledArtifact, ...]:
    found: list[InstalledArtifact] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split(" ", 2)
        if len(parts) != 3 or parts[0] not in ("artifact", "partial"):
            raise FactError(f"unexpected artifacts line: {line[:200]!r}")
        kind, blob, path = parts
        if kind == "partial":
            continue
        try:
            marker = json.loads(b64decode(blob, f"{path}/ARTIFACT").decode("utf-8"))
            found.append(
                InstalledArtifact(
                    name=str(marker.get("name") or posixpath.basename(posixpath.dirname(path))),
                    artifact_id=posixpath.basename(path),
                    version=str(marker["version"]),
                    sha256=str(marker["sha256"]),
                    path=path,
                )
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # unreadable marker: treat like a half install
    return tuple(sorted(found, key=lambda a: a.path))
